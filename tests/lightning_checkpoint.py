"""Real Lightning checkpoint files for tests of the code that reads them (evaluation, export)."""

from __future__ import annotations

from pathlib import Path

import lightning as L


def save_lightning(module: L.LightningModule, path: Path) -> Path:
    """A real Lightning checkpoint file, written the way ModelCheckpoint writes one."""
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path
