"""The torch device a command runs on, chosen the same way by every entry point."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, so the same config runs on a laptop and a GPU node."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
