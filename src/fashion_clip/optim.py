"""Optimisation: AdamW parameter groups, the fused AdamW default and its fallback, the LR schedule.

Fused AdamW is the default (x1.12 per tiny step on CPU); where it cannot run, the unfused one instead.
Lightning's mixed-precision plugin (16-mixed and bf16-mixed alike) refuses to clip a fused optimizer's
gradients, because the fused step unscales them itself; such runs fall back with one log line."""

from __future__ import annotations

import functools
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


def capped_warmup(warmup_steps: int, total_steps: float) -> int:
    """Warmup of at most half the run, so a short run (a test, a debug preset) still reaches its schedule."""
    return int(min(warmup_steps, total_steps // 2))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over the run's optimizer steps; warmup is capped so short runs still decay."""
    total_steps = max(1, int(total_steps))
    warmup_steps = capped_warmup(warmup_steps, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps, min_lr_ratio)
    )


def const_factor(step: int, warmup_steps: int) -> float:
    """open_clip_train's `const_lr` over the base LR: linear warmup, then the base LR to the end."""
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def const_cooldown_factor(
    step: int, warmup_steps: int, total_steps: int, cooldown_steps: int, power: float, end_ratio: float
) -> float:
    """open_clip_train's `const_lr_cooldown` over the base LR: warmup, constant, then `(1 - progress) **
    power` from the base LR down to `end_ratio` of it over the last `cooldown_steps`; held there after."""
    start = total_steps - cooldown_steps
    if step < warmup_steps or step < start:
        return const_factor(step, warmup_steps)
    decay = (1.0 - min(1.0, (step - start) / cooldown_steps)) ** power
    return decay * (1.0 - end_ratio) + end_ratio


def const(
    optimizer: torch.optim.Optimizer, total_steps: float, warmup_steps: int = 100
) -> torch.optim.lr_scheduler.LambdaLR:
    """open_clip_train's `--lr-scheduler const`; runs without an end (trainer.max_epochs=-1) too."""
    warmup_steps = capped_warmup(warmup_steps, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: const_factor(step, warmup_steps))


def const_cooldown(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    max_epochs: int,
    warmup_steps: int = 100,
    epochs_cooldown: int = 1,
    cooldown_power: float = 1.0,
    lr_cooldown_end: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """open_clip_train's `--lr-scheduler const-cooldown`: the cooldown spans the last `epochs_cooldown` of
    the run's `max_epochs` epochs (`total_steps` is max_epochs whole epochs: preflight refuses max_steps),
    and ends at the absolute LR `lr_cooldown_end`, as open_clip's `--lr-cooldown-end`."""
    total_steps = max(1, int(total_steps))
    cooldown_steps = max(1, total_steps // max_epochs * epochs_cooldown)
    warmup_steps = capped_warmup(warmup_steps, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        [
            functools.partial(
                const_cooldown_factor,
                warmup_steps=warmup_steps,
                total_steps=total_steps,
                cooldown_steps=cooldown_steps,
                power=cooldown_power,
                end_ratio=lr_cooldown_end / group["lr"],
            )
            for group in optimizer.param_groups
        ],
    )
