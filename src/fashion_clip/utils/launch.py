"""Where a command runs: the directory the user launched it from (paths on the command line are read
from there, not from Hydra's run directory) and the torch device, chosen the same way by every entry point."""

from __future__ import annotations

from pathlib import Path

import torch


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


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, so the same config runs on a laptop and a GPU node."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
