"""Learning-rate schedule stepped per optimizer step, as CLIP fine-tuning recipes use."""

from __future__ import annotations

import math

import torch


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
