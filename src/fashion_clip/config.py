"""Hydra/OmegaConf set-up shared by every entry point: config location and custom resolvers."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def auto_precision(accelerator: str = "auto") -> str:
    """16-mixed on CUDA; bf16-mixed only on CPUs with native bf16 (emulated bf16 ran 20x slower here)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "16-mixed"
    return "bf16-mixed" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32-true"


OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)
