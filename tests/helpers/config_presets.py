"""The presets a config group offers, as a user selects them (`model=tiny`), from the packaged config dir."""

from __future__ import annotations

from pathlib import Path

from fashion_clip.config import CONFIG_DIR


def preset_names(group: str) -> list[str]:
    """The group's selectable presets: its files less the `_`-prefixed bases they inherit from."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml") if not p.stem.startswith("_"))
