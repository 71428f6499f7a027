"""Training entry point: `python -m fashion_clip.train model=vitb32 loss=infonce data=fashiongen`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashion_clip.config import CONFIG_DIR
from fashion_clip.errors import exit_on_user_error, hydra_cli
from fashion_clip.evaluation.attribute_table import print_fields
from fashion_clip.evaluation.category_report import write_category_reports
from fashion_clip.evaluation.embedded_split import EmbeddedSplit
from fashion_clip.evaluation.evaluator import evaluate_bundle, split_spec
from fashion_clip.evaluation.failure_gallery import check_gallery_size
from fashion_clip.evaluation.gallery_page import GALLERY_NAME, write_gallery
from fashion_clip.evaluation.results_file import BASE, FINETUNED, EvaluationRecord, write_results
from fashion_clip.evaluation.results_table import print_records
from fashion_clip.models.factory import ClipBundle
from fashion_clip.preflight import preflight
from fashion_clip.reporting import log_hyperparameters, write_before_after
from fashion_clip.utils.devices import resolve_device

log = logging.getLogger(__name__)


def loss_name(cfg: DictConfig) -> str:
    """The loss preset's name (`infonce`, `siglip`) for reports; its class name outside a Hydra run."""
    if HydraConfig.initialized() and "loss" in HydraConfig.get().runtime.choices:
        return HydraConfig.get().runtime.choices["loss"]
    return cfg.loss._target_.rsplit(".", 1)[-1]


def evaluate_stage(
    clip: ClipBundle, cfg: DictConfig, stage: str, checkpoint: str | None
) -> tuple[list[EvaluationRecord], EmbeddedSplit]:
    """The named protocols of `cfg.protocol` on the model as it is now, for the run's comparison rows,
    and the embedded split they scored (which the failure gallery ranks)."""
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
    protocols = {name: instantiate(protocol) for name, protocol in (cfg.get("protocol") or {}).items()}
    spec = split_spec(cfg.data, ev.split)
    device = resolve_device(ev.device)
    records, split = evaluate_bundle(clip, spec, protocols, identity, device, ev.batch_size, ev.num_workers)
    print_records(records, stage_title(cfg, stage))
    print_fields(records)
    return records, split


def stage_title(cfg: DictConfig, stage: str) -> str:
    """What was evaluated, for the printed tables and the gallery page."""
    return f"{cfg.model.name} on {cfg.data.name}/{cfg.evaluation.split} ({stage})"


def gallery_size(cfg: DictConfig) -> int | None:
    """The gallery's queries per kind when `evaluation.gallery` is on (checked before training), else None."""
    if not cfg.evaluation.get("gallery"):
        return None
    return check_gallery_size(cfg.evaluation.get("gallery_size"), "evaluation.gallery_size")


def train(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> dict[str, dict[str, float]]:
    """Build every part from the config, fit, and return test recall before and after training."""
    preflight(cfg, "train")
    gallery = gallery_size(cfg)
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
    splits: dict[str, EmbeddedSplit] = {}
    # the gallery ranks the split the protocols embed, so it runs them (none named: embedding only)
    score_stages = bool(cfg.get("protocol")) or gallery is not None
    if cfg.test_before_fit:
        results["before"] = trainer.test(module, datamodule=datamodule)[0]
        if score_stages and trainer.is_global_zero:
            stage_records, split = evaluate_stage(clip, cfg, BASE, None)
            records += stage_records
            if gallery is not None:  # kept through training only when the gallery shows it
                splits[BASE] = split
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    if cfg.test_after_fit:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        # testing the best checkpoint loads its weights into clip.model, which the protocols then score
        results["after"] = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)[0]
        if score_stages and trainer.is_global_zero:
            stage_records, splits[FINETUNED] = evaluate_stage(clip, cfg, FINETUNED, best or None)
            records += stage_records
    if trainer.is_global_zero:
        out_dir = Path(cfg.paths.output_dir)
        if results:
            write_before_after(results, out_dir)
        if records:
            write_results(records, out_dir)
            write_category_reports(records, out_dir)
        if gallery is not None:
            write_stage_gallery(cfg, splits, gallery, out_dir)
    return results


def write_stage_gallery(cfg: DictConfig, splits: dict[str, EmbeddedSplit], size: int, out_dir: Path) -> None:
    """gallery.html of the last evaluated model, with the base model's top products beside when both ran."""
    if not splits:
        log.warning("evaluation.gallery=true but no test evaluation ran (test_after_fit=false): no gallery")
        return
    stage = FINETUNED if FINETUNED in splits else BASE
    base = splits.get(BASE) if stage == FINETUNED else None
    page = write_gallery(splits[stage], out_dir / GALLERY_NAME, size, stage_title(cfg, stage), stage, base)
    log.info("wrote %s", page)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def hydra_main(cfg: DictConfig) -> None:
    """Console entry point (`fashion-clip-train`); Hydra handles overrides, sweeps and the run dir."""
    train(cfg)


main = hydra_cli(hydra_main)

if __name__ == "__main__":
    main()
