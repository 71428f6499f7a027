"""CLIP's softmax contrastive loss, delegated to open_clip so the distributed gather logic is not forked."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, gather_features
from torch import nn

from fashion_clip.losses.base import ContrastiveLoss, ScoredBatch, rank_and_world_size
from fashion_clip.losses.positives import gathered_mask


def soft_target_cross_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against targets spread evenly over each row's positives (one-hot for CLIP's pairs)."""
    mask = mask.to(logits.dtype)
    return F.cross_entropy(logits, mask / mask.sum(dim=1, keepdim=True))


class InfoNCELoss(ContrastiveLoss):
    """Symmetric InfoNCE over the global batch; gathering with grad keeps DDP gradients exact."""

    uses_logit_bias = False
    # the open_clip loss built per topology; distillation swaps in its subclass DistillClipLoss
    open_clip_class: type[ClipLoss] = ClipLoss

    def __init__(
        self,
        gather_with_grad: bool = True,
        local_loss: bool = False,
        positives: str = "pair",
        same_caption_positive: bool = False,
    ) -> None:
        super().__init__(None, None, positives, same_caption_positive)
        self.gather_with_grad = gather_with_grad
        self.local_loss = local_loss

    def _build(self, rank: int, world_size: int) -> nn.Module:
        return self.open_clip_class(
            local_loss=self.local_loss,
            gather_with_grad=self.gather_with_grad,
            rank=rank,
            world_size=world_size,
        )

    def _multi_positive(self, batch: ScoredBatch) -> torch.Tensor:
        """Both directions' soft-target cross-entropy, gathered as open_clip's ClipLoss gathers."""
        all_images, all_texts = batch.image, batch.text
        if batch.world_size > 1:
            rank, _ = rank_and_world_size()
            all_images, all_texts = gather_features(
                batch.image, batch.text, self.local_loss, self.gather_with_grad, rank, batch.world_size
            )
        rows_image, rows_text = (batch.image, batch.text) if self.local_loss else (all_images, all_texts)
        mask = gathered_mask(batch.keys, batch.world_size, rows_are_global=not self.local_loss)
        per_image = soft_target_cross_entropy(batch.logit_scale * rows_image @ all_texts.T, mask)
        per_text = soft_target_cross_entropy(batch.logit_scale * rows_text @ all_images.T, mask)
        return (per_image + per_text) / 2
