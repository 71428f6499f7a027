"""Training entry point: `python -m fashion_clip.train model=vitb32 loss=infonce data=fashiongen`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashion_clip.config import CONFIG_DIR
from fashion_clip.errors import exit_on_user_error
from fashion_clip.reporting import log_hyperparameters, write_before_after

log = logging.getLogger(__name__)


def train(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> dict[str, dict[str, float]]:
    """Build every part from the config, fit, and return test recall before and after training."""
    L.seed_everything(cfg.seed, workers=True)
    clip = instantiate(cfg.model)
    datamodule = instantiate(
        cfg.data,
        train_transform=clip.train_transform,
        val_transform=clip.val_transform,
        tokenizer=clip.tokenizer,
    )
    module = instantiate(
        cfg.module,
        model=clip.model,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()] + list(extra_callbacks)
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    log_hyperparameters(trainer, cfg, module)

    results: dict[str, dict[str, float]] = {}
    if cfg.test_before_fit:
        results["before"] = trainer.test(module, datamodule=datamodule)[0]
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    if cfg.test_after_fit:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results["after"] = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)[0]
    if results and trainer.is_global_zero:
        write_before_after(results, cfg.paths.output_dir)
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Console entry point (`fashion-clip-train`); Hydra handles overrides, sweeps and the run dir."""
    train(cfg)


if __name__ == "__main__":
    main()
