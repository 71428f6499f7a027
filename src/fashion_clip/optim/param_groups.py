"""AdamW parameter groups: CLIP recipes exempt gains, biases, embeddings and the temperature from decay."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from fashion_clip.errors import ConfigError

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
