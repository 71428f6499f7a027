"""The fine-tuning switches under `model.` (conf/model/_base.yaml), applied to a built model in order."""

from __future__ import annotations

import open_clip

from fashion_clip.models.compile import compile_towers
from fashion_clip.models.lora import LoraSettings, apply_lora
from fashion_clip.models.tower_lock import LockSettings, lock_towers, require_trainable


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
