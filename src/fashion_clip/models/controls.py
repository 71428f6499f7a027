"""The fine-tuning switches under `model.` (conf/model/tiny.yaml), applied to a built model in fixed order."""

from __future__ import annotations

import open_clip

from fashion_clip.models.channels_last import to_channels_last
from fashion_clip.models.compile import compile_towers
from fashion_clip.models.lora import LoraSettings, apply_lora
from fashion_clip.models.tower_lock import lock_towers, require_trainable


def apply_controls(
    model: open_clip.CLIP,
    lock_image: bool = False,
    lock_image_unlocked_groups: int = 0,
    lock_image_freeze_bn_stats: bool = False,
    lock_text: bool = False,
    lock_text_unlocked_layers: int = 0,
    lock_text_freeze_layer_norm: bool = True,
    lora: LoraSettings | None = None,
    grad_checkpointing: bool = False,
    channels_last: bool = False,
    compile: bool = False,
    compile_backend: str = "inductor",
) -> open_clip.CLIP:
    """Lock -> LoRA -> check something trains -> grad checkpointing -> channels-last -> compile.

    The order matters: LoRA freezes the towers it adapts after the lock has set the rest, so the
    trainability check sees the final state; compiling comes last so it traces the finished modules.
    All checks run here, at build time, before any data is read.
    """
    lock_towers(
        model,
        lock_image,
        lock_image_unlocked_groups,
        lock_image_freeze_bn_stats,
        lock_text,
        lock_text_unlocked_layers,
        lock_text_freeze_layer_norm,
    )
    apply_lora(model, lora or LoraSettings())
    require_trainable(model)
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    if channels_last:
        to_channels_last(model)
    if compile:
        compile_towers(model, compile_backend)
    return model
