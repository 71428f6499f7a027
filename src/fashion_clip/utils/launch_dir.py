"""Paths given on the command line, read from where the user launched rather than Hydra's run directory."""

from __future__ import annotations

from pathlib import Path


def from_launch_dir(root: str | Path, value: str | Path) -> Path:
    """`value` relative to `root` (`paths.root_dir`, Hydra's runtime.cwd), whatever the run dir, chdir
    setting or the process's working directory; absolute and `~` paths stay where they point."""
    return Path(root) / Path(value).expanduser()


def launch_reference(root: str | Path, value: str | None) -> str | None:
    """A value naming a local file or directory or something else (a pretrained tag, a tokenizer on the
    hub): the absolute path when it names one under `root`, so it reads the same from anywhere; else as
    given."""
    if value is None:
        return None
    local = from_launch_dir(root, value)
    return str(local.resolve()) if local.exists() else value
