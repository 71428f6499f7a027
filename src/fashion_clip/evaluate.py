"""Evaluation entry point: `python -m fashion_clip.evaluate model=vitb32 data=fashiongen [ckpt_path=...]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashion_clip.config import CONFIG_DIR
from fashion_clip.errors import ConfigError, exit_on_user_error, hydra_cli
from fashion_clip.evaluation.attribute_table import print_fields
from fashion_clip.evaluation.category_report import write_category_reports
from fashion_clip.evaluation.embedded_split import EmbeddedSplit
from fashion_clip.evaluation.evaluator import embed_shards, evaluate_bundle, split_spec
from fashion_clip.evaluation.failure_gallery import check_gallery_size
from fashion_clip.evaluation.fashionklip_files import export_fashionklip
from fashion_clip.evaluation.gallery_page import GALLERY_NAME, write_gallery
from fashion_clip.evaluation.results_file import BASE, FINETUNED, EvaluationRecord, write_results
from fashion_clip.evaluation.results_table import print_records
from fashion_clip.models.checkpoint import load_weights
from fashion_clip.preflight import preflight
from fashion_clip.utils.devices import resolve_device

log = logging.getLogger(__name__)

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


def identity(cfg: DictConfig) -> dict[str, str | None]:
    """What a record says was evaluated: the model preset, its weights, the data and the split."""
    return {
        "model": cfg.model.name,
        "pretrained": cfg.model.pretrained,
        "checkpoint": str(Path(cfg.ckpt_path).resolve()) if cfg.ckpt_path else None,
        "loss": training_loss(cfg.ckpt_path),
        "data": cfg.data.name,
        "split": cfg.split,
        "stage": FINETUNED if cfg.ckpt_path else BASE,
    }


def check_gallery_options(cfg: DictConfig) -> None:
    """Reject gallery settings that cannot work before the model is built."""
    if not cfg.gallery:
        if cfg.gallery_base:
            raise ConfigError(
                "gallery_base=true adds the base model's results to the gallery: set gallery=true"
            )
        return
    check_gallery_size(cfg.gallery_size, "gallery_size")
    if cfg.gallery_base and not cfg.ckpt_path:
        raise ConfigError(
            "gallery_base=true shows the base model's top products beside a checkpoint's: set ckpt_path "
            "(without it the evaluated model is the base model)"
        )


def embed_base(cfg: DictConfig, spec: str | list[str], device: torch.device) -> EmbeddedSplit:
    """The split embedded by the base model as a base evaluation would build it (same seed)."""
    L.seed_everything(cfg.seed)
    return embed_shards(instantiate(cfg.model), spec, cfg.split, device, cfg.batch_size, cfg.num_workers)


def evaluate(cfg: DictConfig) -> list[EvaluationRecord]:
    """Embed the split once with the base model or a checkpoint, score each protocol, write and print."""
    if cfg.export_fashionklip and "full" not in cfg.protocol:
        raise ConfigError("export_fashionklip=true needs the full protocol: add it (protocol=[full,...])")
    check_gallery_options(cfg)
    preflight(cfg, "evaluate")
    spec = split_spec(cfg.data, cfg.split)
    L.seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    # a checkpoint replaces every weight, so the base weights need not be downloaded to evaluate it
    bundle = instantiate(cfg.model, **({"pretrained": None} if cfg.ckpt_path else {}))
    if cfg.ckpt_path:
        load_weights(bundle.model, cfg.ckpt_path, cfg.model.name)
    protocols = {name: instantiate(protocol) for name, protocol in cfg.protocol.items()}
    about = identity(cfg)
    records, split = evaluate_bundle(bundle, spec, protocols, about, device, cfg.batch_size, cfg.num_workers)
    out_dir = Path(cfg.paths.output_dir)
    write_results(records, out_dir)
    write_category_reports(records, out_dir)
    if cfg.export_fashionklip:
        full = next(r for r in records if r.protocol == "full")
        export_fashionklip(split, full.metrics, out_dir / "fashionklip", cfg.export_topk)
    title = f"{cfg.model.name} on {cfg.data.name}/{cfg.split} ({about['stage']})"
    if cfg.gallery:
        base = embed_base(cfg, spec, device) if cfg.gallery_base else None
        page = write_gallery(split, out_dir / GALLERY_NAME, cfg.gallery_size, title, about["stage"], base)
        log.info("wrote %s", page)
    print_records(records, title)
    print_fields(records)
    return records


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@exit_on_user_error
def hydra_main(cfg: DictConfig) -> None:
    """Console entry point (`fashion-clip-evaluate`); results land in the Hydra run directory."""
    evaluate(cfg)


main = hydra_cli(hydra_main)

if __name__ == "__main__":
    main()
