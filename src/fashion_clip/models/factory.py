"""One front door to open_clip: model, transforms and tokenizer for a preset, with offline-friendly errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch

from fashion_clip.errors import ConfigError, DownloadError, MissingInputError
from fashion_clip.models.controls import apply_controls

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)


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
    **controls: Any,
) -> tuple[open_clip.CLIP, Callable, Callable]:
    """Build the dual encoder and its transforms; `pretrained` is a tag, a local file, or None.

    `controls` are the other fine-tuning switches of `fashion_clip.models.controls.apply_controls`
    (tower locks, LoRA, compile), applied in its fixed order after the weights load.
    """
    check_pretrained(name, pretrained)
    try:
        model, train_tf, val_tf = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, cache_dir=cache_dir, force_image_size=force_image_size
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
    with_tokenizer: bool = True,
    **controls: Any,
) -> ClipBundle:
    """Hydra's `_target_` for `conf/model/*`: the model, its transforms and tokenizer as one object.

    `controls` are the remaining `model.*` switches (see `apply_controls`): lock, lora, compile,
    compile_backend. `with_tokenizer=False` leaves the tokenizer out (None) for callers that only need the
    weights, such as an open_clip export, which must not download a Hugging Face tokenizer.
    """
    tok = create_tokenizer(name, tokenizer, cache_dir) if with_tokenizer else None
    model, train_tf, val_tf = create_model(
        name, pretrained, cache_dir, force_image_size, grad_checkpointing, **controls
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
