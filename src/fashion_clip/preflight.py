"""Pre-flight: the config mistakes a run can see before it builds a model or reads a sample.

Every entry point (train, evaluate, wise, export, index) calls `preflight(cfg, entry)` before it builds
anything, so a wrong number, a missing file or a checkpoint of another architecture stops the run in seconds
with a message naming the key, instead of minutes later (after the base model's evaluation) with a
traceback. Paths are read from where the user launched (`utils.launch`), as the run reads them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from fashion_clip.data.shard_spec import REMOTE_PREFIXES, resolve_shards
from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.models.checkpoint import checkpoint_state_dict, mismatch
from fashion_clip.models.factory import check_pretrained
from fashion_clip.utils.launch import from_launch_dir, launch_reference

ENTRIES = ("train", "evaluate", "wise", "export", "index")
SPLITS = ("train", "val", "test")
ABSENT = object()


@dataclass(frozen=True)
class Number:
    """A numeric key: its type, smallest allowed value, and whether null is allowed."""

    key: str
    kind: type
    minimum: float
    nullable: bool = False
    above: bool = False  # the minimum itself is not allowed (a learning rate of 0 trains nothing)


NUMBERS = (
    Number("seed", int, 0),
    Number("data.batch_size", int, 1),
    Number("data.eval_batch_size", int, 1, nullable=True),
    Number("data.num_workers", int, 0),
    Number("data.shuffle_buffer", int, 1),
    Number("data.samples_per_epoch", int, 1, nullable=True),
    Number("data.batching_pool", int, 1, nullable=True),
    Number("data.max_skip_fraction", float, 0, nullable=True),
    Number("trainer.max_epochs", int, -1, nullable=True),
    Number("trainer.max_steps", int, -1),
    Number("trainer.log_every_n_steps", int, 1),
    Number("trainer.check_val_every_n_epoch", int, 1, nullable=True),
    Number("trainer.accumulate_grad_batches", int, 1),
    Number("trainer.gradient_clip_val", float, 0, nullable=True),
    Number("trainer.num_sanity_val_steps", int, -1),
    Number("optimizer.lr", float, 0, above=True),
    Number("optimizer.weight_decay", float, 0),
    Number("scheduler.warmup_steps", int, 0),
    Number("module.accumulate", int, 1),
    Number("module.recall_chunk_size", int, 1),
    Number("module.recall_ks", int, 1),
    Number("module.max_logit_scale", float, 1, above=True),
    Number("evaluation.batch_size", int, 1),
    Number("evaluation.num_workers", int, 0),
    Number("export_topk", int, 1),
)
# every protocol's ranks and sizes, whichever protocols are listed
PROTOCOL_NUMBERS = (
    Number("ks", int, 1),
    Number("chunk_size", int, 1),
    Number("num_queries", int, 1),
    Number("num_negatives", int, 1),
    Number("max_queries_per_field", int, 1),
)
# `data.train_eval` given as a number: how many train samples to score beside validation
TRAIN_EVAL_SAMPLES = Number("data.train_eval", int, 1)


def _kind_name(kind: type) -> str:
    """How a message names a type: users write numbers, not Python classes."""
    return "a whole number" if kind is int else "a number"


def check_split(split: str) -> str:
    """`evaluation.split` names one of a data preset's splits; the message lists them."""
    if split not in SPLITS:
        raise ConfigError(f"evaluation.split={split!r} is not one of {', '.join(SPLITS)}")
    return split


def check_number(rule: Number, value: Any, key: str | None = None) -> None:
    """One value against its rule; the message names the key, the value and what is allowed."""
    key = key or rule.key
    if value is None:
        if rule.nullable:
            return
        raise ConfigError(f"{key}=null: give {_kind_name(rule.kind)} (at least {rule.minimum:g})")
    valid_type = isinstance(value, int | float) if rule.kind is float else isinstance(value, int)
    if isinstance(value, bool) or not valid_type:
        raise ConfigError(
            f"{key}={value!r} is not {_kind_name(rule.kind)}: give e.g. {key}={max(rule.minimum, 1):g}"
        )
    too_small = value <= rule.minimum if rule.above else value < rule.minimum
    if too_small:
        bound = f"above {rule.minimum:g}" if rule.above else f"at least {rule.minimum:g}"
        raise ConfigError(f"{key}={value!r} is out of range: it must be {bound}")


def _values(cfg: DictConfig, key: str) -> Iterator[tuple[str, Any]]:
    """The key's value, or each element of a list (`ks`), with the key that names it."""
    value = OmegaConf.select(cfg, key, default=ABSENT)
    if isinstance(value, ListConfig):
        if len(value) == 0:
            raise ConfigError(f"{key}=[] is empty: give at least one value")
        yield from ((f"{key}[{i}]", item) for i, item in enumerate(value))
    elif value is not ABSENT:
        yield key, value


def check_numbers(cfg: DictConfig) -> None:
    """Types and ranges of every numeric key the config has (keys a config lacks are not asked for)."""
    for rule in NUMBERS:
        for key, value in _values(cfg, rule.key):
            check_number(rule, value, key)
    for name in (cfg.get("protocol") or {}).keys():
        for rule in PROTOCOL_NUMBERS:
            for key, value in _values(cfg, f"protocol.{name}.{rule.key}"):
                check_number(rule, value, key)


def check_checkpoint(path: str | Path, model: DictConfig, resume: bool, trust: bool = False) -> None:
    """The file exists, reads as a checkpoint (a Lightning one to resume) and fits the configured model.

    The model is built on the meta device (no memory, under a second), so a checkpoint of another
    architecture is refused before any real model is built.
    """
    state = checkpoint_state_dict(path, lightning_required=resume, trust=trust)
    architecture = open_clip_meta_model(model)
    problems = mismatch(architecture, state, shapes_only=True)
    if problems:
        raise ConfigError(
            f"ckpt_path '{path}' does not fit model.name='{model.name}': {', '.join(problems)}. Use the "
            "model preset the checkpoint was trained with (model=tiny, vitb32, vitb16 or siglip2_vitb16_256)."
        )


def open_clip_meta_model(model: DictConfig) -> torch.nn.Module:
    """The configured architecture with meta tensors: shapes without weights or initialisation."""
    with torch.device("meta"):
        return open_clip.create_model(
            model.name, pretrained=None, device="meta", force_image_size=model.get("force_image_size")
        )


def check_shards(cfg: DictConfig, splits: tuple[str, ...]) -> None:
    """Each needed split's shard spec matches files (remote URLs are trusted)."""
    for split in splits:
        spec = OmegaConf.select(cfg, f"data.{split}")
        if not spec:
            raise ConfigError(f"data.{split} is not set for data={cfg.data.get('name')}: give its shard spec")
        resolve_shards(OmegaConf.to_object(spec) if isinstance(spec, ListConfig) else spec, split)


def check_writable(path: str | Path, key: str) -> None:
    """The output's directory exists or can be made, and can be written, before any work is done."""
    if str(path).startswith(REMOTE_PREFIXES):
        return
    parent = Path(path).expanduser().resolve().parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    try:  # try it: permission bits say nothing for root, nor for read-only or virtual file systems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UserError(
            f"{key}: cannot write to '{parent}' ('{existing}' is not a writable directory: {e.strerror})"
        ) from e


def check_train_eval(cfg: DictConfig) -> None:
    """`data.train_eval`, when set, is a positive number of train samples or a shard spec matching files."""
    value = OmegaConf.select(cfg, "data.train_eval")
    if value is None:
        return
    if isinstance(value, int | float):
        check_number(TRAIN_EVAL_SAMPLES, value)
    else:
        check_shards(cfg, ("train_eval",))


def _train_splits(cfg: DictConfig) -> tuple[str, ...]:
    """The splits a training run reads: train and val always, the scored split when it scores one."""
    scores = cfg.get("test_before_fit") or cfg.get("test_after_fit")
    return tuple(dict.fromkeys(("train", "val", cfg.evaluation.split))) if scores else ("train", "val")


def preflight(cfg: DictConfig, entry: str) -> None:
    """Every check that fits `entry`'s config, in the order a user would fix them."""
    if entry not in ENTRIES:
        raise ValueError(f"unknown entry point {entry!r}")
    check_numbers(cfg)
    pretrained = cfg.model.get("pretrained")
    check_pretrained(cfg.model.name, pretrained and launch_reference(cfg.paths.root_dir, pretrained))
    ckpt = None if OmegaConf.is_missing(cfg, "ckpt_path") else cfg.get("ckpt_path")
    if entry in ("wise", "export") and not ckpt:
        raise ConfigError(
            f"ckpt_path= is required: the checkpoint to {entry} (e.g. .../checkpoints/best-*.ckpt)"
        )
    if ckpt:
        path = from_launch_dir(cfg.paths.root_dir, ckpt)
        if not path.is_file():
            raise MissingInputError(f"ckpt_path '{ckpt}' does not exist (looked for {path})")
        check_checkpoint(path, cfg.model, resume=entry == "train", trust=bool(cfg.get("trust_checkpoint")))
    if entry == "train":
        check_shards(cfg, _train_splits(cfg))
        check_train_eval(cfg)
    elif entry in ("evaluate", "wise"):
        check_shards(cfg, (check_split(cfg.evaluation.split),))
    if entry in ("export", "index") and cfg.get("out"):
        check_writable(from_launch_dir(cfg.paths.root_dir, cfg.out), "out")
    if entry == "index" and not cfg.get("source"):
        raise ConfigError(
            "source is not set: pass source=data/demo/test (shards) or source=DIR (an image folder)"
        )
