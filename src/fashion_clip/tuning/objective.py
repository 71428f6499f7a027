"""A trial is an ordinary training run with the suggested values set; its value is the best checkpoint's
monitored metric (`val/mean_recall`)."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from fashion_clip.tuning.search_space import SearchParam

log = logging.getLogger(__name__)


class TrialFailed(RuntimeError):
    """A trial that ended without a finite value (no checkpoint scored, or a NaN metric)."""


class BestScore(L.Callback):
    """The best score of the checkpoint callback that monitors `monitor`, read when fitting ends."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.value: float | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scores = [
            c.best_model_score
            for c in trainer.checkpoint_callbacks
            if isinstance(c, ModelCheckpoint) and c.monitor == self.monitor and c.best_model_score is not None
        ]
        self.value = float(scores[0]) if scores else None


def trial_config(cfg: DictConfig, values: dict[str, Any], output_dir: Path) -> DictConfig:
    """The run's config with the trial's values set, as command-line overrides would, in its own dir."""
    trial = copy.deepcopy(cfg)
    with open_dict(trial):
        for key, value in values.items():
            OmegaConf.update(trial, key, value, merge=False)
        trial.paths.output_dir = str(output_dir)
    return trial


def make_objective(
    cfg: DictConfig,
    space: Sequence[SearchParam],
    out_dir: Path,
    train: Callable[..., Any],
) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls per trial: suggest, train, return the monitored best score."""
    monitor = cfg.hparams_search.monitor

    def objective(trial: optuna.Trial) -> float:
        values = {param.key: param.suggest(trial) for param in space}
        log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in values.items()))
        best = BestScore(monitor)
        train(trial_config(cfg, values, out_dir / f"trial_{trial.number:03d}"), extra_callbacks=[best])
        if best.value is None or not math.isfinite(best.value):
            raise TrialFailed(f"trial {trial.number} ended without a finite {monitor} (got {best.value})")
        return best.value

    return objective
