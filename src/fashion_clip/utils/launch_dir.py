"""Paths given on the command line, read from where the user launched rather than Hydra's run directory."""

from __future__ import annotations

from pathlib import Path


def from_launch_dir(root: str | Path, value: str) -> Path:
    """`value` relative to `root` (`paths.root_dir`, Hydra's runtime.cwd), whatever the run dir or chdir
    setting; absolute and `~` paths stay where they point."""
    return Path(root) / Path(value).expanduser()
