"""Optimisation: AdamW parameter groups, the fused AdamW default and its fallback, the LR schedule.

Fused AdamW is the default (x1.12 per tiny step on CPU); where it cannot run, the unfused one instead.
Lightning's mixed-precision plugin (16-mixed and bf16-mixed alike) refuses to clip a fused optimizer's
gradients, because the fused step unscales them itself; such runs fall back with one log line."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from fashion_clip.errors import ConfigError

log = logging.getLogger(__name__)

NO_DECAY_MARKERS = (
    "bias",
    "ln",
    "norm",
    "bn",
    "embedding",
    "pos_embed",
    "cls_token",
    "logit_scale",
    "logit_bias",
)


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """Decaying 1-d gains/biases, lookup tables or the temperature hurts contrastive training."""
    return param.ndim < 2 or any(marker in name for marker in NO_DECAY_MARKERS)


def param_groups(named_parameters: Iterable[tuple[str, torch.nn.Parameter]]) -> list[dict]:
    """Two groups for AdamW; the decay group inherits the optimizer's configured weight_decay."""
    trainable = [(n, p) for n, p in named_parameters if p.requires_grad]
    if not trainable:
        raise ConfigError("no trainable parameters: every parameter is frozen (check model lock settings)")
    decay = [p for n, p in trainable if not is_no_decay(n, p)]
    no_decay = [p for n, p in trainable if is_no_decay(n, p)]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def fused_refusal(device_type: str, mixed_precision: bool, clipping: bool) -> str | None:
    """Why a fused optimizer cannot run in this training run, or None where it can."""
    if device_type not in _get_fused_kernels_supported_devices():
        return f"no fused optimizer kernels in torch for device '{device_type}'"
    if mixed_precision and clipping:
        return (
            "gradient clipping under mixed precision, which Lightning refuses for a fused optimizer "
            "(its step unscales the gradients itself)"
        )
    return None


def asks_fused(factory: Callable[..., torch.optim.Optimizer]) -> bool:
    """Whether the configured optimizer (a partial, as Hydra builds it) was given fused=True."""
    return bool(getattr(factory, "keywords", {}).get("fused"))


@rank_zero_only
def log_fallback(reason: str) -> None:
    """One line per run (rank zero) saying the configured fused optimizer was replaced, and why."""
    log.warning(
        "optimizer.fused=true: using the unfused optimizer instead, because of %s; "
        "optimizer.fused=false says so in the config and silences this line",
        reason,
    )


def build_optimizer(
    factory: Callable[..., torch.optim.Optimizer], params: list[dict[str, Any]], refusal: str | None
) -> torch.optim.Optimizer:
    """The configured optimizer; a fused one becomes unfused where `refusal` says it cannot run."""
    if refusal is None or not asks_fused(factory):
        return factory(params)
    log_fallback(refusal)
    return factory(params, fused=False)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup avoids early instability; cosine decays to `min_lr_ratio` of the base LR."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over the run's optimizer steps; warmup is capped so short runs still decay."""
    total_steps = max(1, int(total_steps))
    warmup_steps = min(warmup_steps, total_steps // 2)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps, min_lr_ratio)
    )
