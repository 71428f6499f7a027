"""SigLIP's pairwise sigmoid loss, delegated to open_clip to reuse its neighbour-exchange distributed path."""

from __future__ import annotations

import math

import torch
import torch.distributed.nn
import torch.nn.functional as F
from open_clip.loss import SigLipLoss as OpenClipSigLipLoss
from torch import nn

from fashion_clip.losses.base import ContrastiveLoss, ScoredBatch
from fashion_clip.losses.positives import gathered_mask


class SigLipLoss(ContrastiveLoss):
    """Sigmoid loss needs no global softmax, so it scales to large batches without an all-gather.

    With several positives per row, labels are +1 for every positive pair and -1 otherwise; the texts are
    then all-gathered (with grad) instead of exchanged with neighbours, since the labels of a text block
    need the ids of the rank it came from.
    """

    uses_logit_bias = True

    def __init__(
        self,
        init_logit_scale: float = math.log(10),
        init_logit_bias: float = -10.0,
        dist_impl: str | None = None,
        positives: str = "pair",
        same_caption_positive: bool = False,
    ) -> None:
        super().__init__(init_logit_scale, init_logit_bias, positives, same_caption_positive)
        self.dist_impl = dist_impl

    def _build(self, rank: int, world_size: int) -> nn.Module:
        return OpenClipSigLipLoss(rank=rank, world_size=world_size, dist_impl=self.dist_impl)

    def _multi_positive(self, batch: ScoredBatch) -> torch.Tensor:
        """This rank's images against every text, summed over pairs, over local images (as open_clip)."""
        all_texts = batch.text
        if batch.world_size > 1:
            all_texts = torch.cat(torch.distributed.nn.functional.all_gather(batch.text))
        labels = 2 * gathered_mask(batch.keys, batch.world_size, rows_are_global=False) - 1
        logits = batch.logit_scale * batch.image @ all_texts.T + batch.logit_bias
        return -F.logsigmoid(labels * logits).sum() / len(batch.image)
