"""CLIP's softmax contrastive loss, delegated to open_clip so the distributed gather logic is not forked."""

from __future__ import annotations

from open_clip.loss import ClipLoss
from torch import nn

from fashion_clip.losses.base import ContrastiveLoss


class InfoNCELoss(ContrastiveLoss):
    """Symmetric InfoNCE over the global batch; gathering with grad keeps DDP gradients exact."""

    uses_logit_bias = False

    def __init__(self, gather_with_grad: bool = True, local_loss: bool = False) -> None:
        super().__init__(init_logit_scale=None, init_logit_bias=None)
        self.gather_with_grad = gather_with_grad
        self.local_loss = local_loss

    def _build(self, rank: int, world_size: int) -> nn.Module:
        return ClipLoss(
            local_loss=self.local_loss,
            gather_with_grad=self.gather_with_grad,
            rank=rank,
            world_size=world_size,
        )
