"""Hyperparameters to every logger, so TensorBoard's HPARAMS tab can compare runs."""

from __future__ import annotations

import lightning as L
from omegaconf import DictConfig, OmegaConf


def log_hyperparameters(trainer: L.Trainer, cfg: DictConfig, module: L.LightningModule) -> None:
    """The whole resolved config plus parameter counts, so TensorBoard's HPARAMS tab can compare runs."""
    params = dict(OmegaConf.to_container(cfg, resolve=True))
    params.pop("paths", None)
    params["params/total"] = sum(p.numel() for p in module.parameters())
    params["params/trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    for logger in trainer.loggers:
        logger.log_hyperparams(params)
