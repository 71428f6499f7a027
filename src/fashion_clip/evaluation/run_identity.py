"""What an evaluation record says was evaluated: the model, its weights and loss, the data and the split."""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig

RUN_CONFIG_DEPTH = 3


def training_loss(ckpt_path: str | None) -> str | None:
    """The loss a checkpoint was trained with, read from its run's saved Hydra choices when present."""
    if not ckpt_path:
        return None
    for parent in list(Path(ckpt_path).resolve().parents)[:RUN_CONFIG_DEPTH]:
        saved = parent / ".hydra" / "hydra.yaml"
        if saved.is_file():
            choices = yaml.safe_load(saved.read_text())["hydra"]["runtime"]["choices"]
            return choices.get("loss")
    return None


def run_identity(
    cfg: DictConfig, stage: str, checkpoint: str | None, loss: str | None
) -> dict[str, str | None]:
    """The identity fields of every record train, evaluate and wise write, in one order for all three."""
    return {
        "model": cfg.model.name,
        "pretrained": cfg.model.pretrained,
        "checkpoint": checkpoint,
        "loss": loss,
        "data": cfg.data.name,
        "split": cfg.evaluation.split,
        "stage": stage,
    }


def run_title(cfg: DictConfig, stage: str) -> str:
    """What was evaluated, for printed tables and gallery pages."""
    return f"{cfg.model.name} on {cfg.data.name}/{cfg.evaluation.split} ({stage})"
