"""One front door to open_clip: model, transforms and tokenizer for a preset, with offline-friendly errors."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.transform import AugmentationCfg, PreprocessCfg, image_transform_v2

from fashion_clip.errors import ConfigError, DownloadError, MissingInputError
from fashion_clip.models.controls import apply_controls

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)
# `data.augment` keys that only one of open_clip's train transforms reads: its own (torchvision's crop ratio)
# leaves the first to timm's; with use_timm, open_clip drops the second before calling timm
TIMM_ONLY = ("ratio", "re_prob", "re_count", "auto_augment")
OPEN_CLIP_ONLY = ("color_jitter_prob", "gray_scale_prob")


@dataclass
class ClipBundle:
    """Everything a run needs from one model preset, built together so they always match."""

    name: str
    model: open_clip.CLIP
    train_transform: Callable[[Any], torch.Tensor]
    val_transform: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor] | None


def _pretrained_help(name: str, pretrained: str) -> str:
    """Tell an offline user exactly how to get weights onto this machine and point the config at them."""
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
    return (
        f"could not load pretrained weights for model '{name}' with pretrained='{pretrained}' "
        f"(known tags for this model: {tags}). If this machine is offline, download them elsewhere with "
        f"`open_clip.create_model_and_transforms('{name}', pretrained='{pretrained}')` and copy the "
        f"checkpoint file over, then set model.pretrained=/path/to/open_clip_model.safetensors "
        f"(or model.pretrained=null for random init)."
    )


def check_pretrained(name: str, pretrained: str | None) -> None:
    """The model exists in open_clip and `pretrained` is a local file or one of its tags, checked before
    anything is built or downloaded."""
    if name not in open_clip.list_models():
        raise ConfigError(f"model.name='{name}' is not an open_clip model; see open_clip.list_models()")
    if (
        pretrained
        and not Path(pretrained).is_file()
        and pretrained not in (open_clip.list_pretrained_tags_by_model(name))
    ):
        raise MissingInputError(_pretrained_help(name, pretrained))


def create_model(
    name: str,
    pretrained: str | None = None,
    cache_dir: str | None = None,
    force_image_size: int | None = None,
    grad_checkpointing: bool = False,
    patch_dropout: float = 0.0,
    **controls: Any,
) -> tuple[open_clip.CLIP, Callable, Callable]:
    """Build the dual encoder and its transforms; `pretrained` is a tag, a local file, or None.

    `patch_dropout` is open_clip's (FLIP): the image tower drops that fraction of its patch tokens in
    training mode only (open_clip's PatchDropout, timm's patch_drop_rate in a timm tower); 0 = off.
    `controls` are the other fine-tuning switches of `fashion_clip.models.controls.apply_controls`
    (tower locks, LoRA, compile), applied in its fixed order after the weights load.
    """
    check_pretrained(name, pretrained)
    try:
        model, train_tf, val_tf = open_clip.create_model_and_transforms(
            name,
            pretrained=pretrained,
            cache_dir=cache_dir,
            force_image_size=force_image_size,
            force_patch_dropout=patch_dropout,
        )
    except RuntimeError as e:
        if not pretrained:
            raise
        raise DownloadError(_pretrained_help(name, pretrained)) from e
    return apply_controls(model, grad_checkpointing=grad_checkpointing, **controls), train_tf, val_tf


def create_tokenizer(name: str, tokenizer: str | None = None, cache_dir: str | None = None) -> Callable:
    """The model's own tokenizer; `tokenizer` points HF-tokenizer models at a local directory."""
    text_cfg = open_clip.get_model_config(name).get("text_cfg", {})
    hub_name = text_cfg.get("hf_tokenizer_name")
    source = tokenizer or hub_name
    if not source:
        return open_clip.get_tokenizer(name)
    try:
        return open_clip.tokenizer.HFTokenizer(
            source,
            context_length=text_cfg.get("context_length", open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH),
            cache_dir=cache_dir,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            **text_cfg.get("tokenizer_kwargs", {}),
        )
    except Exception as e:  # transformers raises OSError, ImportError, ValueError... depending on cause
        raise DownloadError(
            f"could not load the tokenizer '{source}' for model '{name}' ({type(e).__name__}: {e}). "
            f"This model uses a Hugging Face tokenizer (needs `pip install transformers sentencepiece`); "
            f"offline, save it elsewhere with `AutoTokenizer.from_pretrained('{hub_name}')"
            f".save_pretrained(DIR)`, copy DIR here and set model.tokenizer=DIR."
        ) from e


def create_clip(
    name: str,
    pretrained: str | None = None,
    tokenizer: str | None = None,
    cache_dir: str | None = None,
    force_image_size: int | None = None,
    grad_checkpointing: bool = False,
    patch_dropout: float = 0.0,
    with_tokenizer: bool = True,
    **controls: Any,
) -> ClipBundle:
    """Hydra's `_target_` for `conf/model/*`: the model, its transforms and tokenizer as one object.

    `patch_dropout` is `create_model`'s. `controls` are the remaining `model.*` switches (see
    `apply_controls`): lock, lora, compile, compile_backend. `with_tokenizer=False` leaves the tokenizer
    out (None) for callers that only need the weights, such as an open_clip export, which must not
    download a Hugging Face tokenizer.
    """
    tok = create_tokenizer(name, tokenizer, cache_dir) if with_tokenizer else None
    model, train_tf, val_tf = create_model(
        name, pretrained, cache_dir, force_image_size, grad_checkpointing, patch_dropout, **controls
    )
    log.info(
        "created %s (pretrained=%s, %.1fM params, %.1fM trainable)",
        name,
        pretrained,
        _count_params(model) / 1e6,
        _count_params(model, trainable_only=True) / 1e6,
    )
    return ClipBundle(name, model, train_tf, val_tf, tok)


def _count_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Counts for the log line: the total to check against the paper, the trainable part for locks/LoRA."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class TrainAugmentation(AugmentationCfg):
    """`data.augment`: open_clip's AugmentationCfg and timm's RandAugment/AutoAugment policy string, which
    open_clip passes to timm's create_transform with the other fields when `use_timm` is set."""

    auto_augment: str | None = None

    def __post_init__(self) -> None:
        _check_pair("scale", self.scale)
        _check_pair("ratio", self.ratio)
        unread = OPEN_CLIP_ONLY if self.use_timm else TIMM_ONLY
        ignored = next((key for key in unread if getattr(self, key)), None)
        if ignored:
            raise ConfigError(
                f"data.augment.{ignored}={_as_written(getattr(self, ignored))!r} is ignored unless "
                f"data.augment.use_timm={str(not self.use_timm).lower()}: set that, or set {ignored}=null"
            )
        if self.use_timm:
            _check_jitter(self.color_jitter, (1, 3, 4))
        elif (self.color_jitter is None) != (self.color_jitter_prob is None):
            raise ConfigError(
                f"data.augment.color_jitter={_as_written(self.color_jitter)!r} with color_jitter_prob="
                f"{self.color_jitter_prob!r}: open_clip's own transform jitters only with both; set both or "
                "neither"
            )
        else:
            _check_jitter(self.color_jitter, (4,))


def _check_pair(key: str, pair: Sequence[float] | None) -> None:
    """A (low, high) range as open_clip and timm draw from it."""
    if pair is not None and (len(pair) != 2 or pair[0] > pair[1]):
        raise ConfigError(f"data.augment.{key}={list(pair)}: give two values, the low one first")


def _as_written(value: Any) -> Any:
    """A value as the config writes it, for messages: a list, not the tuple open_clip is given."""
    return list(value) if isinstance(value, tuple) else value


def _check_jitter(jitter: float | Sequence[float] | None, sizes: tuple[int, ...]) -> None:
    """Colour jitter strengths: open_clip's transform takes 4 (brightness, contrast, saturation, hue),
    timm's also 3 (no hue) or one number (brightness, contrast and saturation alike)."""
    count = len(jitter) if isinstance(jitter, Sequence) else 1
    if jitter is not None and count not in sizes:
        raise ConfigError(
            f"data.augment.color_jitter={_as_written(jitter)!r}: give {' or '.join(map(str, sizes))} values "
            "(brightness, contrast, saturation, hue)"
        )


def augmented_train_transform(preprocess: Mapping[str, Any], augment: Mapping[str, Any]) -> Callable:
    """The train transform open_clip's create_model_and_transforms builds with `aug_cfg=augment` (plain
    values) for a model of that preprocess config: `data.augment` is composed apart from the model, so
    training builds it from the model it made (`open_clip.get_model_preprocess_cfg`)."""
    settings = TrainAugmentation(**{k: tuple(v) if isinstance(v, list) else v for k, v in augment.items()})
    with warnings.catch_warnings():
        # open_clip's own transform calls every set field but scale unused; __post_init__ refuses those it is
        warnings.filterwarnings("ignore", message="Unused augmentation cfg items")
        return image_transform_v2(PreprocessCfg(**preprocess), is_train=True, aug_cfg=settings)
