"""From a run's config to its evaluation: the scoring of a split the config asks for, built once for train,
evaluate and wise (`split_scoring`), and the files a run's scores are written to (`write_run_outputs`).

Every option of the `evaluation` group and `export_fashionklip` is read here: each is honoured by every
command or refused, before any model is built, where it means nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.evaluator import Protocol, embed_shards, evaluate_bundle, split_spec
from fashion_clip.evaluation.fashionklip_files import export_fashionklip
from fashion_clip.models.factory import ClipBundle
from fashion_clip.preflight import check_split
from fashion_clip.records import BASE, FINETUNED, EvaluationRecord, run_title, write_results
from fashion_clip.reports.leaderboard import write_leaderboard
from fashion_clip.reports.pages import GALLERY_NAME, check_gallery_size, write_gallery
from fashion_clip.reports.tables import write_category_reports
from fashion_clip.retrieval.embedding import EmbeddedSplit
from fashion_clip.utils.launch import resolve_device

log = logging.getLogger(__name__)

SCORING_ENTRIES = ("train", "evaluate", "wise")


@dataclass(frozen=True)
class SplitScoring:
    """How a run scores a split (`split` of `data`, on a device, under the named protocols, in batches) and
    what it writes beside the records: a gallery of `gallery` queries per kind, FashionKLIP files (None: not
    asked)."""

    split: str
    data: DictConfig
    device: torch.device
    protocols: dict[str, Protocol]
    batch_size: int
    num_workers: int
    gallery: int | None = None
    gallery_base: bool = False
    fashionklip_topk: int | None = None

    @property
    def spec(self) -> str | list[str]:
        """The split's shard spec, asked for when a model is embedded: a run scoring nothing needs none."""
        return split_spec(self.data, self.split)

    @property
    def keeps_splits(self) -> bool:
        """Whether the outputs need an embedded split beside the records, so a run must keep it."""
        return self.gallery is not None or self.fashionklip_topk is not None

    def embed(self, bundle: ClipBundle) -> EmbeddedSplit:
        """The split as `bundle` embeds it, unscored: the base model's side of a gallery."""
        return embed_shards(bundle, self.spec, self.split, self.device, self.batch_size, self.num_workers)

    def score(
        self, bundle: ClipBundle, identity: Mapping[str, str | None]
    ) -> tuple[list[EvaluationRecord], EmbeddedSplit]:
        """Each protocol's record of `bundle` (`identity`: the record's fields but metrics) and the split."""
        return evaluate_bundle(
            bundle, self.spec, self.protocols, identity, self.device, self.batch_size, self.num_workers
        )


def gallery_conflict(cfg: DictConfig, entry: str) -> str | None:
    """Why `evaluation.gallery=true` with these settings asks `entry` for a page it cannot show, naming the
    setting to change; None when it fits."""
    with_base = cfg.evaluation.get("gallery_base")
    if entry == "wise":
        return (
            "evaluation.gallery=true: wise scores several weight mixes and writes no gallery; show a "
            "checkpoint's worst queries with `python -m fashion_clip.evaluate ckpt_path=... "
            "evaluation.gallery=true`"
        )
    if entry == "evaluate" and with_base and not cfg.get("ckpt_path"):
        return (
            "evaluation.gallery_base=true shows the base model's top products beside a checkpoint's: set "
            "ckpt_path (without it the evaluated model is the base model)"
        )
    if entry == "train" and not (cfg.test_before_fit or cfg.test_after_fit):
        return (
            "evaluation.gallery=true shows the worst queries of the scored split, but test_before_fit=false "
            "and test_after_fit=false score none: set test_after_fit=true"
        )
    if entry == "train" and with_base and not (cfg.test_before_fit and cfg.test_after_fit):
        return (
            "evaluation.gallery_base=true shows the base model's top products, from the evaluation before "
            "fitting, beside the fine-tuned model's: set test_before_fit=true and test_after_fit=true"
        )
    return None


def gallery_size(cfg: DictConfig, entry: str) -> int | None:
    """The gallery's queries per kind when `evaluation.gallery` is on, else None; settings `entry` cannot
    honour are refused."""
    ev = cfg.evaluation
    if not ev.get("gallery"):
        if ev.get("gallery_base"):
            raise ConfigError(
                "evaluation.gallery_base=true adds the base model's results to the gallery: "
                "set evaluation.gallery=true"
            )
        return None
    size = check_gallery_size(ev.get("gallery_size"), "evaluation.gallery_size")
    conflict = gallery_conflict(cfg, entry)
    if conflict:
        raise ConfigError(conflict)
    return size


def fashionklip_topk(cfg: DictConfig, entry: str, protocols: Mapping[str, Protocol]) -> int | None:
    """`export_topk` when `export_fashionklip` asks for the FashionKLIP files, else None; they come from the
    full protocol of one model, so only evaluate writes them."""
    if not cfg.get("export_fashionklip"):
        return None
    if entry != "evaluate":
        raise ConfigError(
            f"export_fashionklip=true is an option of python -m fashion_clip.evaluate, not {entry}: evaluate "
            "the checkpoint with it"
        )
    if "full" not in protocols:
        raise ConfigError("export_fashionklip=true needs the full protocol: add it (protocol=[full,...])")
    return cfg.export_topk


def split_scoring(cfg: DictConfig, entry: str) -> SplitScoring:
    """The scoring `cfg` asks of `entry` (train, evaluate or wise), built once from `protocol` and the
    `evaluation` group; an option `entry` cannot honour stops here, before any model is built."""
    if entry not in SCORING_ENTRIES:
        raise ValueError(f"unknown scoring entry point {entry!r}")
    ev = cfg.evaluation
    protocols = {name: instantiate(protocol) for name, protocol in (cfg.get("protocol") or {}).items()}
    return SplitScoring(
        split=check_split(ev.split),
        data=cfg.data,
        device=resolve_device(ev.device),
        protocols=protocols,
        batch_size=ev.batch_size,
        num_workers=ev.num_workers,
        gallery=gallery_size(cfg, entry),
        gallery_base=bool(ev.get("gallery_base")),
        fashionklip_topk=fashionklip_topk(cfg, entry, protocols),
    )


def write_run_outputs(
    cfg: DictConfig,
    scoring: SplitScoring,
    records: list[EvaluationRecord],
    splits: Mapping[str, EmbeddedSplit],
) -> None:
    """The run directory's evaluation files: `evaluation_results.json`, `categories_<protocol>.{md,png}` and
    (protocol=marqo) `leaderboard_marqo.{md,csv}` of the records and, where asked, `gallery.html` and
    `fashionklip/` of the model shown (the fine-tuned one when `splits` has it), with the base model's top
    products beside under `evaluation.gallery_base`."""
    out_dir = Path(cfg.paths.output_dir)
    if records:
        write_results(records, out_dir)
        write_category_reports(records, out_dir)
        for path in write_leaderboard(records, out_dir):
            log.info("wrote %s", path)
    shown = FINETUNED if FINETUNED in splits else BASE
    if scoring.gallery is not None:
        base = splits[BASE] if scoring.gallery_base else None
        title = run_title(cfg, shown)
        page = write_gallery(splits[shown], out_dir / GALLERY_NAME, scoring.gallery, title, shown, base)
        log.info("wrote %s", page)
    if scoring.fashionklip_topk is not None:
        full = next(r for r in records if r.protocol == "full" and r.stage == shown)
        export_fashionklip(splits[shown], full.metrics, out_dir / "fashionklip", scoring.fashionklip_topk)
