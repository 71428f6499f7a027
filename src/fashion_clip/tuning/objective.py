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

from fashion_clip.errors import UserError, find_user_error
from fashion_clip.tuning.search_space import SearchParam

log = logging.getLogger(__name__)

# the trial attribute that marks a trial ended by a user's mistake: it does not count towards n_trials
USER_ERROR = "user_error"


class TrialFailed(RuntimeError):
    """A trial that ended without a finite value (no checkpoint scored, or a NaN metric)."""


class SearchStopped(BaseException):
    """A user's mistake ended a trial. Not an Exception, so it passes Optuna's trial handler (which would
    record a counted FAIL, log a traceback and go on) and leaves `optimize` at once; `tune` then closes
    the trial and stops with the message."""

    def __init__(self, number: int, values: dict[str, Any], error: UserError) -> None:
        super().__init__(str(error))
        self.number = number
        self.values = values
        self.error = error


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


def listed(values: dict[str, Any]) -> str:
    """`key=value, ...`, as logs and messages show a trial's values (the command line's form)."""
    return ", ".join(f"{key}={value}" for key, value in values.items())


def with_values(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    """A copy of the config with the dotted keys set, as command-line overrides would set them."""
    changed = copy.deepcopy(cfg)
    with open_dict(changed):
        for key, value in values.items():
            OmegaConf.update(changed, key, value, merge=False)
    return changed


def trial_config(cfg: DictConfig, values: dict[str, Any], output_dir: Path) -> DictConfig:
    """The run's config with the trial's values set, in the trial's own directory."""
    trial = with_values(cfg, values)
    with open_dict(trial):
        trial.paths.output_dir = str(output_dir)
    return trial


def make_objective(
    cfg: DictConfig,
    space: Sequence[SearchParam],
    out_dir: Path,
    train: Callable[..., Any],
) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls per trial: suggest, train, return the monitored best score. A crash
    fails the trial and the search goes on; a user's mistake stops the search (`SearchStopped`)."""
    monitor = cfg.hparams_search.monitor

    def objective(trial: optuna.Trial) -> float:
        values = {param.key: param.suggest(trial) for param in space}
        log.info("trial %d: %s", trial.number, listed(values))
        best = BestScore(monitor)
        try:
            train(trial_config(cfg, values, out_dir / f"trial_{trial.number:03d}"), extra_callbacks=[best])
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None:
                raise
            trial.set_user_attr(USER_ERROR, str(user_error))
            raise SearchStopped(trial.number, values, user_error) from err
        if best.value is None or not math.isfinite(best.value):
            raise TrialFailed(f"trial {trial.number} ended without a finite {monitor} (got {best.value})")
        return best.value

    return objective
