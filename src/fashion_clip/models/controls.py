"""The fine-tuning switches under `model.` (conf/model/_base.yaml), applied to a built model in order;
torch.compile of both towers, in place, so state-dict keys (checkpoints, exports) stay unchanged."""

from __future__ import annotations

import open_clip
import torch
from torch import nn

from fashion_clip.errors import ConfigError
from fashion_clip.models.lora import LoraSettings, apply_lora
from fashion_clip.models.tower_lock import LockSettings, lock_towers, require_trainable, text_tower


def _check_backend(backend: str) -> None:
    """An unknown backend name would only fail at the first batch, deep inside dynamo."""
    if backend not in torch.compiler.list_backends(exclude_tags=()):
        raise ConfigError(
            f"model.compile_backend='{backend}' is not a torch.compile backend; use inductor, aot_eager or "
            "another name from torch.compiler.list_backends()."
        )


def _check_no_attention_adapters(model: nn.Module) -> None:
    """peft's MultiheadAttention LoRA re-registers weights inside forward, which dynamo cannot trace."""
    if any(isinstance(getattr(m, "base_layer", None), nn.MultiheadAttention) for m in model.modules()):
        raise ConfigError(
            "model.compile=true cannot compile LoRA adapters on attention (peft swaps the attention weights "
            "during each forward): remove 'attn' from model.lora.targets or set model.compile=false."
        )


def compile_towers(model: open_clip.CLIP, backend: str = "inductor") -> open_clip.CLIP:
    """Compile the image tower and the text transformer; encode_image/encode_text then run compiled.

    Compilation happens at the first batch of each shape (about a minute per tower with inductor on CPU).
    """
    _check_backend(backend)
    _check_no_attention_adapters(model)
    model.visual.compile(backend=backend)
    text_tower(model).transformer.compile(backend=backend)
    return model


def apply_controls(
    model: open_clip.CLIP,
    lock: LockSettings | None = None,
    lora: LoraSettings | None = None,
    grad_checkpointing: bool = False,
    compile: bool = False,
    compile_backend: str = "inductor",
) -> open_clip.CLIP:
    """Lock -> LoRA -> check something trains -> grad checkpointing -> compile.

    The order matters: LoRA freezes the towers it adapts after the lock has set the rest, so the
    trainability check sees the final state; compiling comes last so it traces the finished modules.
    All checks run here, at build time, before any data is read.
    """
    lock_towers(model, lock or LockSettings())
    apply_lora(model, lora or LoraSettings())
    require_trainable(model)
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    if compile:
        compile_towers(model, compile_backend)
    return model
