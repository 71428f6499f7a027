"""SigLIP's pairwise sigmoid loss, delegated to open_clip to reuse its neighbour-exchange distributed path."""

from __future__ import annotations

import math

from open_clip.loss import SigLipLoss as OpenClipSigLipLoss
from torch import nn

from fashion_clip.losses.base import ContrastiveLoss


class SigLipLoss(ContrastiveLoss):
    """Sigmoid loss needs no global softmax, so it scales to large batches without an all-gather."""

    uses_logit_bias = True

    def __init__(
        self,
        init_logit_scale: float = math.log(10),
        init_logit_bias: float = -10.0,
        dist_impl: str | None = None,
    ) -> None:
        super().__init__(init_logit_scale=init_logit_scale, init_logit_bias=init_logit_bias)
        self.dist_impl = dist_impl

    def _build(self, rank: int, world_size: int) -> nn.Module:
        return OpenClipSigLipLoss(rank=rank, world_size=world_size, dist_impl=self.dist_impl)
