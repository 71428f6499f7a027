"""An evaluation run from its config: score the base model or a checkpoint under the named protocols.

The entry point `python -m fashion_clip.evaluate` and `fashion_clip.api.evaluate` both run `evaluate`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.embedded_split import EmbeddedSplit
from fashion_clip.evaluation.evaluator import embed_shards, evaluate_bundle, split_spec
from fashion_clip.evaluation.failure_gallery import check_gallery_size
from fashion_clip.evaluation.fashionklip_files import export_fashionklip
from fashion_clip.evaluation.run_identity import run_identity, run_title, training_loss
from fashion_clip.models.loading import load_clip
from fashion_clip.preflight import preflight
from fashion_clip.reports.attribute_table import print_fields
from fashion_clip.reports.category_report import write_category_reports
from fashion_clip.reports.gallery_page import GALLERY_NAME, write_gallery
from fashion_clip.reports.results_file import BASE, FINETUNED, EvaluationRecord, write_results
from fashion_clip.reports.results_table import print_records
from fashion_clip.utils.devices import resolve_device

log = logging.getLogger(__name__)


def identity(cfg: DictConfig) -> dict[str, str | None]:
    """What a record says was evaluated: the base model, or a checkpoint and the loss it was trained on."""
    checkpoint = str(Path(cfg.ckpt_path).resolve()) if cfg.ckpt_path else None
    return run_identity(cfg, FINETUNED if cfg.ckpt_path else BASE, checkpoint, training_loss(cfg.ckpt_path))


def check_gallery_options(cfg: DictConfig) -> None:
    """Reject gallery settings that cannot work before the model is built."""
    if not cfg.evaluation.gallery:
        if cfg.evaluation.gallery_base:
            raise ConfigError(
                "evaluation.gallery_base=true adds the base model's results to the gallery: "
                "set evaluation.gallery=true"
            )
        return
    check_gallery_size(cfg.evaluation.gallery_size, "evaluation.gallery_size")
    if cfg.evaluation.gallery_base and not cfg.ckpt_path:
        raise ConfigError(
            "evaluation.gallery_base=true shows the base model's top products beside a checkpoint's: "
            "set ckpt_path "
            "(without it the evaluated model is the base model)"
        )


def embed_base(cfg: DictConfig, spec: str | list[str], device: torch.device) -> EmbeddedSplit:
    """The split embedded by the base model as a base evaluation would build it (same seed)."""
    L.seed_everything(cfg.seed)
    return embed_shards(
        instantiate(cfg.model),
        spec,
        cfg.evaluation.split,
        device,
        cfg.evaluation.batch_size,
        cfg.evaluation.num_workers,
    )


def evaluate(cfg: DictConfig) -> list[EvaluationRecord]:
    """Embed the split once with the base model or a checkpoint, score each protocol, write and print."""
    if cfg.export_fashionklip and "full" not in cfg.protocol:
        raise ConfigError("export_fashionklip=true needs the full protocol: add it (protocol=[full,...])")
    check_gallery_options(cfg)
    preflight(cfg, "evaluate")
    spec = split_spec(cfg.data, cfg.evaluation.split)
    L.seed_everything(cfg.seed)
    device = resolve_device(cfg.evaluation.device)
    bundle = load_clip(cfg.model, cfg.ckpt_path, cfg.trust_checkpoint)
    protocols = {name: instantiate(protocol) for name, protocol in cfg.protocol.items()}
    about = identity(cfg)
    records, split = evaluate_bundle(
        bundle, spec, protocols, about, device, cfg.evaluation.batch_size, cfg.evaluation.num_workers
    )
    out_dir = Path(cfg.paths.output_dir)
    write_results(records, out_dir)
    write_category_reports(records, out_dir)
    if cfg.export_fashionklip:
        full = next(r for r in records if r.protocol == "full")
        export_fashionklip(split, full.metrics, out_dir / "fashionklip", cfg.export_topk)
    title = run_title(cfg, about["stage"])
    if cfg.evaluation.gallery:
        base = embed_base(cfg, spec, device) if cfg.evaluation.gallery_base else None
        page = write_gallery(
            split, out_dir / GALLERY_NAME, cfg.evaluation.gallery_size, title, about["stage"], base
        )
        log.info("wrote %s", page)
    print_records(records, title)
    print_fields(records)
    return records
