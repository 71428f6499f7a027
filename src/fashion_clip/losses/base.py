"""The contract every loss meets for the module, and the shared plumbing of the contrastive losses.

`TrainingLoss` is what the module reads from any loss. `ContrastiveLoss` implements it for the losses
that score image-text pairs, so each only says how it scores a batch. With CLIP's one positive per row
(`positives=pair`) the loss is open_clip's own, built per (rank, world size). With several positives per
row (`positives=product`, or `same_caption_positive`) the loss gathers features and ids across ranks and
scores them against a positive mask (losses/positives.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from fashion_clip.losses.positives import check_positives


def rank_and_world_size() -> tuple[int, int]:
    """Read at call time because Hydra builds the losses before Lightning creates the process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ScoredBatch(NamedTuple):
    """What a multi-positive loss scores: this rank's unit-norm features, the logit scale and bias, the
    rows' (positive ids, caption keys or None) and how many ranks share the batch."""

    image: torch.Tensor
    text: torch.Tensor
    logit_scale: torch.Tensor
    logit_bias: torch.Tensor | None
    keys: tuple[torch.Tensor, torch.Tensor | None]
    world_size: int


class TrainingLoss(nn.Module, ABC):
    """What the module reads from its loss, whichever loss it is.

    `uses_logit_bias`: the model needs a logit bias (the module adds one, starting at `init_logit_bias`
    with the scale at `init_logit_scale`, when the model has none). `batch_inputs` picks the batch tensors
    `forward` takes as keywords. `terms` holds the parts of the last value (detached), each logged apart.
    """

    uses_logit_bias: bool = False
    init_logit_scale: float | None = None
    init_logit_bias: float | None = None

    def __init__(self) -> None:
        super().__init__()
        self.terms: dict[str, torch.Tensor] = {}

    def batch_inputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor | None]:
        """Product ids and caption keys: what the product-aware modes compare to find a row's positives."""
        return {"product": batch.get("product"), "caption": batch.get("caption_key")}

    def bind_student(self, image_mean: torch.Tensor, image_std: torch.Tensor) -> None:
        """The normalisation of the student's images, told once by the module; only a loss that feeds
        them to another model (distillation's teacher) needs it."""

    @abstractmethod
    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        distributed: bool = True,
        **inputs: torch.Tensor | None,
    ) -> torch.Tensor:
        """The loss of unit-norm features; `inputs` are `batch_inputs(batch)` of the batch they encode."""


class ContrastiveLoss(TrainingLoss):
    """Builds one open_clip loss per (rank, world_size), since open_clip fixes both at construction."""

    def __init__(
        self,
        init_logit_scale: float | None = None,
        init_logit_bias: float | None = None,
        positives: str = "pair",
        same_caption_positive: bool = False,
    ) -> None:
        super().__init__()
        check_positives(positives, same_caption_positive)
        self.init_logit_scale = init_logit_scale
        self.init_logit_bias = init_logit_bias
        self.positives = positives
        self.same_caption_positive = same_caption_positive
        self._open_clip_losses: dict[tuple[int, int], nn.Module] = {}

    @abstractmethod
    def _build(self, rank: int, world_size: int) -> nn.Module:
        """Subclasses choose the open_clip loss and its options; the base only handles the topology."""

    @abstractmethod
    def _multi_positive(self, batch: ScoredBatch) -> torch.Tensor:
        """The loss with a positive mask built from the batch's keys."""

    @property
    def multi_positive(self) -> bool:
        """Whether a row can have more than its own pair as positive (else open_clip's loss runs as is)."""
        return self.positives != "pair" or self.same_caption_positive

    def open_clip_loss(self, distributed: bool = True) -> nn.Module:
        """The open_clip loss for the current process group (or this rank alone), built on first use."""
        key = rank_and_world_size() if distributed else (0, 1)
        if key not in self._open_clip_losses:
            self._open_clip_losses[key] = self._build(*key)
        return self._open_clip_losses[key]

    def _keys(
        self, features: torch.Tensor, rank: int, product: torch.Tensor | None, caption: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's positive ids (product ids, or global row numbers for pairs) and caption keys."""
        if self.positives == "product" and product is None:
            raise ValueError(f"{type(self).__name__}(positives='product') needs the batch's product ids")
        if self.same_caption_positive and caption is None:
            raise ValueError(
                f"{type(self).__name__}(same_caption_positive=True) needs the batch's caption keys"
            )
        if self.positives == "product":
            ids = product
        else:
            ids = torch.arange(len(features), device=features.device) + rank * len(features)
        return ids, caption if self.same_caption_positive else None

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        distributed: bool = True,
        product: torch.Tensor | None = None,
        caption: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One signature for every loss; losses without a bias ignore it so SigLIP models still train.

        `distributed=False` scores this rank's batch alone: evaluation batches differ in size across
        ranks, and the feature exchange needs equal sizes. `product` (int64 ids) and `caption` (int64
        keys of the caption text) are the batch's; only the multi-positive modes read them.
        """
        if self.uses_logit_bias and logit_bias is None:
            raise ValueError(
                f"{type(self).__name__} needs logit_bias, but the model returned none; use a model with a "
                "logit_bias parameter (a SigLIP checkpoint, or let the module add one from init_logit_bias)."
            )
        if self.multi_positive:
            rank, world_size = rank_and_world_size() if distributed else (0, 1)
            keys = self._keys(image_features, rank, product, caption)
            return self._multi_positive(
                ScoredBatch(image_features, text_features, logit_scale, logit_bias, keys, world_size)
            )
        loss = self.open_clip_loss(distributed)
        if not self.uses_logit_bias:
            return loss(image_features, text_features, logit_scale)
        return loss(image_features, text_features, logit_scale, logit_bias)
