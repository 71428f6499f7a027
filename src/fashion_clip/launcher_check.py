"""Hydra callback: check cluster launcher settings when a sweep starts, before any job is submitted."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fashion_clip.errors import ConfigError

SLURM_TARGET = "SlurmLauncher"


def check_launcher(launcher: DictConfig) -> None:
    """A SLURM launch without a partition would only fail in sbatch, after the sweep has started."""
    if not str(launcher.get("_target_", "")).endswith(SLURM_TARGET):
        return
    if OmegaConf.is_missing(launcher, "partition") or not launcher.partition:
        raise ConfigError(
            "hydra/launcher=slurm needs a partition: add hydra.launcher.partition=<name> "
            "(`sinfo -s` lists the partitions of your cluster)"
        )


class LauncherCheck(Callback):
    """Runs `check_launcher` at multirun start, so a bad cluster config costs no queue time."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_launcher(config.hydra.launcher)
