"""A training run from its config: build every part, score the base model, fit, score the best checkpoint.

The entry points `python -m fashion_clip.train` and `python -m fashion_clip.tune` both run `train`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from fashion_clip.data.datamodule import datamodule_config
from fashion_clip.evaluation.embedded_split import EmbeddedSplit
from fashion_clip.evaluation.evaluator import evaluate_bundle, split_spec
from fashion_clip.evaluation.failure_gallery import check_gallery_size
from fashion_clip.evaluation.run_identity import run_identity, run_title
from fashion_clip.models.checkpoint import read_checkpoint
from fashion_clip.models.factory import ClipBundle
from fashion_clip.preflight import preflight
from fashion_clip.reports.attribute_table import print_fields
from fashion_clip.reports.before_after import stage_metrics, write_before_after
from fashion_clip.reports.category_report import write_category_reports
from fashion_clip.reports.gallery_page import GALLERY_NAME, write_gallery
from fashion_clip.reports.hyperparameters import log_hyperparameters
from fashion_clip.reports.results_file import BASE, FINETUNED, EvaluationRecord, write_results
from fashion_clip.utils.devices import resolve_device

log = logging.getLogger(__name__)


def loss_name(cfg: DictConfig) -> str:
    """The loss preset's name (`infonce`, `siglip`) for reports; its class name outside a Hydra run."""
    if HydraConfig.initialized() and "loss" in HydraConfig.get().runtime.choices:
        return HydraConfig.get().runtime.choices["loss"]
    return cfg.loss._target_.rsplit(".", 1)[-1]


def evaluate_stage(
    clip: ClipBundle, cfg: DictConfig, trainer: L.Trainer, stage: str, checkpoint: str | None
) -> tuple[list[EvaluationRecord], EmbeddedSplit]:
    """The named protocols of `cfg.protocol` on the model as it is now, for the run's comparison rows
    (also logged at the trainer's step), and the embedded split they scored (the failure gallery ranks it)."""
    ev = cfg.evaluation
    identity = run_identity(cfg, stage, checkpoint, loss_name(cfg))
    protocols = {name: instantiate(protocol) for name, protocol in (cfg.get("protocol") or {}).items()}
    spec = split_spec(cfg.data, ev.split)
    device = resolve_device(ev.device)
    records, split = evaluate_bundle(clip, spec, protocols, identity, device, ev.batch_size, ev.num_workers)
    log_stage(trainer, records, ev.split, trainer.global_step)
    print_fields(records)
    return records, split


def gallery_size(cfg: DictConfig) -> int | None:
    """The gallery's queries per kind when `evaluation.gallery` is on (checked before training), else None."""
    if not cfg.evaluation.get("gallery"):
        return None
    return check_gallery_size(cfg.evaluation.get("gallery_size"), "evaluation.gallery_size")


def load_best(trainer: L.Trainer, module: L.LightningModule) -> str | None:
    """The best checkpoint's weights into the module (and so the bundle's model), as Lightning's test
    loop would load them; None when no checkpoint was kept (the model stays as training left it)."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        module.load_state_dict(read_checkpoint(best)["state_dict"])
    return best or None


def log_stage(trainer: L.Trainer, records: Sequence[EvaluationRecord], split: str, step: int) -> None:
    """The scored split's metrics as `<split>/<protocol>/<metric>` points beside the validation curves."""
    metrics = {f"{split}/{r.protocol}/{name}": value for r in records for name, value in r.metrics.items()}
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)


def train(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> dict[str, dict[str, float]]:
    """Build every part from the config, fit, and return the named protocols' scores before and after.

    The split is scored once per stage, by the protocols, on rank 0 (the metric gathers nothing there);
    Lightning's validation loop stays the recall hook during training.
    """
    preflight(cfg, "train")
    gallery = gallery_size(cfg)
    L.seed_everything(cfg.seed, workers=True)
    clip = instantiate(cfg.model)
    datamodule = instantiate(
        datamodule_config(cfg.data),
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

    records: list[EvaluationRecord] = []
    splits: dict[str, EmbeddedSplit] = {}
    # the gallery ranks the split the protocols embed, so it runs them (none named: embedding only);
    # before fit the trainer has not launched its DDP ranks yet, so the rank comes from the environment
    score = (bool(cfg.get("protocol")) or gallery is not None) and rank_zero_only.rank == 0
    if cfg.test_before_fit and score:
        stage_records, split = evaluate_stage(clip, cfg, trainer, BASE, None)
        records += stage_records
        if gallery is not None:  # kept through training only when the gallery shows it
            splits[BASE] = split
    trainer.fit(
        module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=not cfg.get("trust_checkpoint")
    )
    if cfg.test_after_fit and score:
        stage_records, splits[FINETUNED] = evaluate_stage(
            clip, cfg, trainer, FINETUNED, load_best(trainer, module)
        )
        records += stage_records
    if score:
        out_dir = Path(cfg.paths.output_dir)
        if records:
            write_before_after(records, run_title(cfg, "before and after fine-tuning"), out_dir)
            write_results(records, out_dir)
            write_category_reports(records, out_dir)
        if gallery is not None:
            write_stage_gallery(cfg, splits, gallery, out_dir)
    return stage_metrics(records)


def write_stage_gallery(cfg: DictConfig, splits: dict[str, EmbeddedSplit], size: int, out_dir: Path) -> None:
    """gallery.html of the last evaluated model, with the base model's top products beside when both ran."""
    if not splits:
        log.warning("evaluation.gallery=true but no test evaluation ran (test_after_fit=false): no gallery")
        return
    stage = FINETUNED if FINETUNED in splits else BASE
    base = splits.get(BASE) if stage == FINETUNED else None
    page = write_gallery(splits[stage], out_dir / GALLERY_NAME, size, run_title(cfg, stage), stage, base)
    log.info("wrote %s", page)
