"""Shared plumbing for the open_clip loss wrappers, so each wrapper only says which loss it builds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.distributed as dist
from torch import nn


def rank_and_world_size() -> tuple[int, int]:
    """Read at call time because Hydra builds the losses before Lightning creates the process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ContrastiveLoss(nn.Module, ABC):
    """Builds one open_clip loss per (rank, world_size), since open_clip fixes both at construction."""

    uses_logit_bias: ClassVar[bool]

    def __init__(self, init_logit_scale: float | None = None, init_logit_bias: float | None = None) -> None:
        super().__init__()
        self.init_logit_scale = init_logit_scale
        self.init_logit_bias = init_logit_bias
        self._open_clip_losses: dict[tuple[int, int], nn.Module] = {}

    @abstractmethod
    def _build(self, rank: int, world_size: int) -> nn.Module:
        """Subclasses choose the open_clip loss and its options; the base only handles the topology."""

    def open_clip_loss(self, distributed: bool = True) -> nn.Module:
        """The open_clip loss for the current process group (or this rank alone), built on first use."""
        key = rank_and_world_size() if distributed else (0, 1)
        if key not in self._open_clip_losses:
            self._open_clip_losses[key] = self._build(*key)
        return self._open_clip_losses[key]

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        distributed: bool = True,
    ) -> torch.Tensor:
        """One signature for every loss; losses without a bias ignore it so SigLIP models still train.

        `distributed=False` scores this rank's batch alone: evaluation batches differ in size across
        ranks, and the feature exchange needs equal sizes.
        """
        loss = self.open_clip_loss(distributed)
        if not self.uses_logit_bias:
            return loss(image_features, text_features, logit_scale)
        if logit_bias is None:
            raise ValueError(
                f"{type(self).__name__} needs logit_bias, but the model returned none; use a model with a "
                "logit_bias parameter (a SigLIP checkpoint, or let the module add one from init_logit_bias)."
            )
        return loss(image_features, text_features, logit_scale, logit_bias)
