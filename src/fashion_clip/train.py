"""Training entry point: `python -m fashion_clip.train model=vitb32 loss=infonce data=fashiongen`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashion_clip.config import CONFIG_DIR
from fashion_clip.errors import exit_on_user_error
from fashion_clip.evaluation.evaluator import evaluate_bundle, resolve_device, split_spec
from fashion_clip.evaluation.results_file import BASE, FINETUNED, EvaluationRecord, write_results
from fashion_clip.evaluation.results_table import print_records
from fashion_clip.models.factory import ClipBundle
from fashion_clip.reporting import log_hyperparameters, write_before_after

log = logging.getLogger(__name__)


def loss_name(cfg: DictConfig) -> str:
    """The loss preset's name (`infonce`, `siglip`) for reports; its class name outside a Hydra run."""
    if HydraConfig.initialized() and "loss" in HydraConfig.get().runtime.choices:
        return HydraConfig.get().runtime.choices["loss"]
    return cfg.loss._target_.rsplit(".", 1)[-1]


def evaluate_stage(
    clip: ClipBundle, cfg: DictConfig, stage: str, checkpoint: str | None
) -> list[EvaluationRecord]:
    """The named protocols of `cfg.protocol` on the model as it is now, for the run's comparison rows."""
    ev = cfg.evaluation
    identity = {
        "model": cfg.model.name,
        "pretrained": cfg.model.pretrained,
        "checkpoint": checkpoint,
        "loss": loss_name(cfg),
        "data": cfg.data.name,
        "split": ev.split,
        "stage": stage,
    }
    protocols = {name: instantiate(protocol) for name, protocol in cfg.protocol.items()}
    spec = split_spec(cfg.data, ev.split)
    device = resolve_device(ev.device)
    records, _ = evaluate_bundle(clip, spec, protocols, identity, device, ev.batch_size, ev.num_workers)
    print_records(records, f"{cfg.model.name} on {cfg.data.name}/{ev.split} ({stage})")
    return records


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
    records: list[EvaluationRecord] = []
    named_protocols = bool(cfg.get("protocol"))
    if cfg.test_before_fit:
        results["before"] = trainer.test(module, datamodule=datamodule)[0]
        if named_protocols and trainer.is_global_zero:
            records += evaluate_stage(clip, cfg, BASE, None)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    if cfg.test_after_fit:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        # testing the best checkpoint loads its weights into clip.model, which the protocols then score
        results["after"] = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)[0]
        if named_protocols and trainer.is_global_zero:
            records += evaluate_stage(clip, cfg, FINETUNED, best or None)
    if trainer.is_global_zero:
        if results:
            write_before_after(results, cfg.paths.output_dir)
        if records:
            write_results(records, cfg.paths.output_dir)
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Console entry point (`fashion-clip-train`); Hydra handles overrides, sweeps and the run dir."""
    train(cfg)


if __name__ == "__main__":
    main()
