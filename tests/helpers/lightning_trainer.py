"""Real Lightning Trainers on CPU for tests: one quiet optimizer step, and checkpoint files to read back."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader


def quiet_trainer(**options: object) -> L.Trainer:
    """A CPU Trainer that writes no logs or checkpoints and prints no progress: tests stay fast and clean."""
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )


def fit_one_step(
    module: L.LightningModule, batches: list[dict[str, torch.Tensor]], **trainer_options: object
) -> L.Trainer:
    """One optimizer step of `module` on ready-made batches, without validation."""
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, **trainer_options)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    return trainer


def save_lightning(module: L.LightningModule, path: Path) -> Path:
    """A real Lightning checkpoint file, written the way ModelCheckpoint writes one."""
    trainer = quiet_trainer()
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path
