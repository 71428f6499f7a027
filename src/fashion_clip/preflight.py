"""Pre-flight: the config mistakes a run can see before it builds a model or reads a sample.

Every entry point (train, evaluate, wise, export, index) calls `preflight(cfg, entry)` before it builds
anything, so a wrong number, a missing file or a checkpoint of another architecture stops the run in seconds
with a message naming the key, instead of minutes later (after the base model's evaluation) with a
traceback. Paths are read from where the user launched (`utils.launch`), as the run reads them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from open_clip.transform import PreprocessCfg

from fashion_clip.data.shard_spec import REMOTE_PREFIXES, resolve_shards
from fashion_clip.data.weighted_sources import is_weighted, parse_sources, weighted_shards
from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.models.checkpoint import checkpoint_state_dict, mismatch
from fashion_clip.models.factory import TrainAugmentation, augmented_train_transform, check_pretrained
from fashion_clip.utils.launch import from_launch_dir, launch_reference

ENTRIES = ("train", "evaluate", "wise", "export", "index")
# the keys naming a model preset and its checkpoint: the trained model's, and loss=distill's teacher's
STUDENT = ("model", "ckpt_path")
TEACHER = ("loss.teacher.config", "loss.teacher.ckpt_path")
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
    maximum: float | None = None  # the largest allowed value (a probability's 1), if any
    below: bool = False  # the maximum itself is not allowed (a patch dropout of 1 would drop every patch)


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
    Number("scheduler.epochs_cooldown", int, 1),
    Number("scheduler.cooldown_power", float, 0, above=True),
    Number("scheduler.lr_cooldown_end", float, 0),
    Number("callbacks.early_stopping.patience", int, 0),
    Number("callbacks.early_stopping.min_delta", float, 0),
    Number("module.accumulate", int, 1),
    Number("module.recall_chunk_size", int, 1),
    Number("module.recall_ks", int, 1),
    Number("module.max_logit_scale", float, 1, above=True),
    Number("loss.distill_weight", float, 0),
    Number("model.patch_dropout", float, 0, maximum=1, below=True),
    Number("data.augment.scale", float, 0, above=True, maximum=1),
    Number("data.augment.ratio", float, 0, nullable=True, above=True),
    Number("data.augment.color_jitter", float, 0, nullable=True),
    Number("data.augment.color_jitter_prob", float, 0, nullable=True, maximum=1),
    Number("data.augment.gray_scale_prob", float, 0, nullable=True, maximum=1),
    Number("data.augment.re_prob", float, 0, nullable=True, maximum=1),
    Number("data.augment.re_count", int, 1, nullable=True),
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
    too_large = rule.maximum is not None and (value >= rule.maximum if rule.below else value > rule.maximum)
    if too_small or too_large:
        raise ConfigError(f"{key}={value!r} is out of range: it must be {_allowed(rule)}")


def _allowed(rule: Number) -> str:
    """The range a message names: `at least 1`, `at least 0 and below 1`, ..."""
    low = f"above {rule.minimum:g}" if rule.above else f"at least {rule.minimum:g}"
    if rule.maximum is None:
        return low
    return f"{low} and {'below' if rule.below else 'at most'} {rule.maximum:g}"


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


def check_checkpoint(
    path: str | Path, model: DictConfig, resume: bool, trust: bool = False, keys: tuple[str, str] = STUDENT
) -> None:
    """The file exists, reads as a checkpoint (a Lightning one to resume) and fits the configured model.

    The model is built on the meta device (no memory, under a second), so a checkpoint of another
    architecture is refused before any real model is built. `keys` name the model and checkpoint keys.
    """
    model_key, ckpt_key = keys
    state = checkpoint_state_dict(path, lightning_required=resume, trust=trust)
    architecture = open_clip_meta_model(model)
    problems = mismatch(architecture, state, shapes_only=True)
    if problems:
        preset = "model" if model_key == "model" else f"model@{model_key}"
        raise ConfigError(
            f"{ckpt_key} '{path}' does not fit {model_key}.name='{model.name}': {', '.join(problems)}. Use "
            f"the model preset the checkpoint was trained with ({preset}=tiny, vitb32, vitb16 or "
            "siglip2_vitb16_256)."
        )


def check_weights(
    model: DictConfig, ckpt: str | None, root: str, resume: bool, trust: bool, keys: tuple[str, str] = STUDENT
) -> None:
    """A model preset's pretrained weights exist, and its checkpoint, if any, exists and fits it."""
    pretrained = model.get("pretrained")
    check_pretrained(model.name, pretrained and launch_reference(root, pretrained))
    if not ckpt:
        return
    path = from_launch_dir(root, ckpt)
    if not path.is_file():
        raise MissingInputError(f"{keys[1]} '{ckpt}' does not exist (looked for {path})")
    check_checkpoint(path, model, resume, trust, keys)


def check_teacher(cfg: DictConfig) -> None:
    """loss=distill: the teacher's weights, checked as the student's are, before either model is built."""
    teacher = OmegaConf.select(cfg, "loss.teacher")
    if isinstance(teacher, DictConfig) and "config" in teacher:
        trust = bool(teacher.get("trust_checkpoint"))
        check_weights(teacher.config, teacher.get("ckpt_path"), cfg.paths.root_dir, False, trust, TEACHER)


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
        value = OmegaConf.to_object(spec) if isinstance(spec, ListConfig) else spec
        if split == "train" and is_weighted(value):  # every source resolves, each weight is above 0
            weighted_shards(parse_sources(value, bool(OmegaConf.select(cfg, "data.resampled"))))
        else:
            resolve_shards(value, split)


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


def check_augment(cfg: DictConfig) -> None:
    """`data.augment` holds only augmentation settings and builds a transform: timm and torchvision check
    the rest (a RandAugment string, a hue above 0.5) only when they build theirs."""
    augment = OmegaConf.select(cfg, "data.augment")
    if augment is None:
        return
    if not isinstance(augment, DictConfig):
        raise ConfigError(f"data.augment={augment!r} is not a mapping: give settings like data.augment.scale")
    values = OmegaConf.to_container(augment, resolve=True)
    known = [field.name for field in dataclasses.fields(TrainAugmentation)]
    unknown = next((key for key in values if key not in known), None)
    if unknown:
        raise ConfigError(f"data.augment.{unknown} is not an augmentation setting: use {', '.join(known)}")
    if not isinstance(values.get("use_timm", False), bool):
        raise ConfigError(f"data.augment.use_timm={values['use_timm']!r}: give true or false")
    try:
        augmented_train_transform(dataclasses.asdict(PreprocessCfg()), values)
    except UserError:
        raise
    except (AssertionError, ValueError, TypeError) as e:  # timm asserts on a policy, torchvision raises
        raise ConfigError(f"data.augment does not build a train transform ({e}): {values}") from e


def _train_splits(cfg: DictConfig) -> tuple[str, ...]:
    """The splits a training run reads: train and val always, the scored split when it scores one."""
    scores = cfg.get("test_before_fit") or cfg.get("test_after_fit")
    return tuple(dict.fromkeys(("train", "val", cfg.evaluation.split))) if scores else ("train", "val")


def check_scheduler(cfg: DictConfig) -> None:
    """A cooldown over the last epochs needs a run of whole epochs: trainer.max_epochs set, max_steps off."""
    if OmegaConf.select(cfg, "scheduler.epochs_cooldown") is None:
        return
    max_steps, max_epochs = cfg.trainer.get("max_steps", -1), cfg.trainer.get("max_epochs")
    if max_steps != -1:
        raise ConfigError(
            f"trainer.max_steps={max_steps} with scheduler=const_cooldown, which cools down over the last "
            "scheduler.epochs_cooldown epochs of trainer.max_epochs: set trainer.max_steps=-1 and give the "
            "run's length as trainer.max_epochs"
        )
    if max_epochs is None or max_epochs < 1:
        raise ConfigError(
            f"trainer.max_epochs={max_epochs} with scheduler=const_cooldown, which needs the run's length "
            "in epochs: give e.g. trainer.max_epochs=10"
        )


# loggers whose library is an optional extra (pyproject.toml `tracking`)
TRACKING_MODULES = {
    "lightning.pytorch.loggers.MLFlowLogger": "mlflow",
    "lightning.pytorch.loggers.WandbLogger": "wandb",
}


def check_loggers(cfg: DictConfig) -> None:
    """A chosen logger's library is installed, so a run does not fail after its base evaluation."""
    for name, logger in (cfg.get("logger") or {}).items():
        module = TRACKING_MODULES.get(logger.get("_target_"))
        if module and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"logger={name} needs the {module} package: pip install 'fashion-clip[tracking]' "
                "(or drop it from the logger list)"
            )


def preflight(cfg: DictConfig, entry: str) -> None:
    """Every check that fits `entry`'s config, in the order a user would fix them."""
    if entry not in ENTRIES:
        raise ValueError(f"unknown entry point {entry!r}")
    check_numbers(cfg)
    ckpt = None if OmegaConf.is_missing(cfg, "ckpt_path") else cfg.get("ckpt_path")
    if entry in ("wise", "export") and not ckpt:
        raise ConfigError(
            f"ckpt_path= is required: the checkpoint to {entry} (e.g. .../checkpoints/best-*.ckpt)"
        )
    trust = bool(cfg.get("trust_checkpoint"))
    check_weights(cfg.model, ckpt, cfg.paths.root_dir, entry == "train", trust)
    if entry == "train":
        check_teacher(cfg)
        check_augment(cfg)
        check_shards(cfg, _train_splits(cfg))
        check_train_eval(cfg)
        check_scheduler(cfg)
        check_loggers(cfg)
    elif entry in ("evaluate", "wise"):
        check_shards(cfg, (check_split(cfg.evaluation.split),))
    if entry in ("export", "index") and cfg.get("out"):
        check_writable(from_launch_dir(cfg.paths.root_dir, cfg.out), "out")
    if entry == "index" and not cfg.get("source"):
        raise ConfigError(
            "source is not set: pass source=data/demo/test (shards) or source=DIR (an image folder)"
        )
