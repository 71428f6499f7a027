"""A training run from its config: build every part, score the base model, fit, score the best checkpoint.

The entry points `python -m fashion_clip.train` and `python -m fashion_clip.tune` both run `train`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import open_clip
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from fashion_clip.data.datamodule import datamodule_config
from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.evaluation.front_door import SplitScoring, split_scoring, write_run_outputs
from fashion_clip.models.checkpoint import read_checkpoint
from fashion_clip.models.factory import ClipBundle, augmented_train_transform
from fashion_clip.preflight import preflight
from fashion_clip.records import BASE, FINETUNED, EvaluationRecord, run_identity, run_title
from fashion_clip.reports.tables import (
    COLUMNS,
    before_after_rows,
    log_hyperparameters,
    print_fields,
    stage_metrics,
    write_before_after,
)
from fashion_clip.retrieval.embedding import EmbeddedSplit
from fashion_clip.utils.launch import from_launch_dir


def loss_name(cfg: DictConfig) -> str:
    """The loss preset's name (`infonce`, `siglip`) for reports; its class name outside a Hydra run."""
    if HydraConfig.initialized() and "loss" in HydraConfig.get().runtime.choices:
        return HydraConfig.get().runtime.choices["loss"]
    return cfg.loss._target_.rsplit(".", 1)[-1]


def evaluate_stage(
    clip: ClipBundle,
    cfg: DictConfig,
    scoring: SplitScoring,
    trainer: L.Trainer,
    stage: str,
    checkpoint: str | None,
) -> tuple[list[EvaluationRecord], EmbeddedSplit]:
    """The named protocols on the model as it is now, for the run's comparison rows (also logged at the
    trainer's step), and the embedded split they scored (the failure gallery ranks it)."""
    records, split = scoring.score(clip, run_identity(cfg, stage, checkpoint, loss_name(cfg)))
    log_stage(trainer, records, scoring.split, trainer.global_step)
    print_fields(records)
    return records, split


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


def log_before_after(loggers: Sequence[Logger], records: Sequence[EvaluationRecord], table: Path) -> None:
    """The before/after table beside each tracker's curves (TensorBoard text, MLflow artifacts, a W&B
    table; CSV's is the file itself), then each logger closed again: Lightning finalized them when fit
    ended, before the after stage's metrics and this table, which would otherwise stay unflushed."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(table.stem, table.read_text())
        elif isinstance(logger, MLFlowLogger):
            for path in (table, table.with_suffix(".json")):
                logger.experiment.log_artifact(logger.run_id, str(path))
        elif isinstance(logger, WandbLogger):
            logger.log_table(table.stem, columns=list(COLUMNS), data=before_after_rows(records))
        logger.finalize("success")


def train(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> dict[str, dict[str, float]]:
    """Build every part from the config, fit, and return the named protocols' scores before and after.

    The split is scored once per stage, by the protocols, on rank 0 (the metric gathers nothing there);
    Lightning's validation loop stays the recall hook during training.
    """
    scoring = split_scoring(cfg, "train")
    preflight(cfg, "train")
    root = cfg.paths.root_dir
    L.seed_everything(cfg.seed, workers=True)
    clip = load_clip(cfg.model, root=root).bundle
    augment = cfg.data.get("augment")  # null: open_clip's default
    augment = OmegaConf.to_container(augment, resolve=True) if augment else {}
    datamodule = instantiate(
        datamodule_config(cfg.data),
        train_transform=augmented_train_transform(open_clip.get_model_preprocess_cfg(clip.model), augment),
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
    score = (bool(scoring.protocols) or scoring.gallery is not None) and rank_zero_only.rank == 0
    if cfg.test_before_fit and score:
        stage_records, split = evaluate_stage(clip, cfg, scoring, trainer, BASE, None)
        records += stage_records
        if scoring.keeps_splits:  # kept through training only when an output shows it
            splits[BASE] = split
    resume = str(from_launch_dir(root, cfg.ckpt_path)) if cfg.ckpt_path else None
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=not cfg.get("trust_checkpoint"))
    if cfg.test_after_fit and score:
        stage_records, splits[FINETUNED] = evaluate_stage(
            clip, cfg, scoring, trainer, FINETUNED, load_best(trainer, module)
        )
        records += stage_records
    if score:
        if records:
            title = run_title(cfg, "before and after fine-tuning")
            table = write_before_after(records, title, Path(cfg.paths.output_dir))
            log_before_after(trainer.loggers, records, table)
        write_run_outputs(cfg, scoring, records, splits)
    return stage_metrics(records)
