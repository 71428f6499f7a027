"""FashionKLIP-style concept injection: the base contrastive loss plus image-to-concept alignment.

Each image is pulled towards the prompts of the concepts its caption names (several positives) and,
at `hypernym_weight`, towards their hypernyms, in a softmax over the whole concept bank. The bank is the
concept prompts embedded by the current text tower and held fixed between refreshes, so the concept term
trains the image side only. With `prototype_weight > 0` the image is also pulled, the same way, towards
the visual prototypes of its named concepts (the mean embedding of each concept's example images).

The loss reads no file and runs no model: the ConceptBankRefresh callback (knowledge/bank_refresh.py)
embeds the bank into it with `set_bank` and adds each batch's concept targets under `NAMED_TARGETS` and
`HYPERNYM_TARGETS`, which `batch_inputs` hands to `forward`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from fashion_clip.errors import ConfigError
from fashion_clip.losses.base import ContrastiveLoss, TrainingLoss, rank_and_world_size

NAMED_TARGETS = "concept_targets"
HYPERNYM_TARGETS = "hypernym_targets"


def multi_positive_nce(
    logits: torch.Tensor, positives: torch.Tensor, distributed: bool = False
) -> torch.Tensor:
    """Mean over images with a positive of the mean -log softmax over the bank at their positives.

    Images whose caption names no concept do not enter the mean. Under DDP the count of images with a
    positive is summed over ranks and each rank's share scaled by the world size, so the gradients DDP
    averages are those of the global batch's mean. With no positive anywhere the term is a zero that
    keeps the graph (every parameter still gets a gradient, as DDP requires).
    """
    counts = positives.sum(dim=1)
    per_image = -(positives * logits.log_softmax(dim=1)).sum(dim=1) / counts.clamp(min=1)
    with_positive = (counts > 0).sum().to(logits.dtype)
    _, world_size = rank_and_world_size() if distributed else (0, 1)
    if world_size > 1:
        dist.all_reduce(with_positive)
    return per_image.sum() * world_size / with_positive.clamp(min=1)


def check_weights(concept_weight: float, hypernym_weight: float, prototype_weight: float) -> None:
    """Reject settings that would silently disable or invert the concept term."""
    if min(concept_weight, hypernym_weight, prototype_weight) < 0:
        raise ConfigError(
            f"loss.concept_weight={concept_weight}, loss.hypernym_weight={hypernym_weight}, "
            f"loss.prototype_weight={prototype_weight}: weights must be at least 0 (0 turns a term off)"
        )


def check_targets(named: torch.Tensor | None, hypernyms: torch.Tensor | None, rows: int, bank: int) -> None:
    """Fail clearly when the callback that turns captions into targets did not run for this batch."""
    if named is None or hypernyms is None or bank == 0:
        raise RuntimeError(
            "ConceptLoss needs the concept bank (set_bank) and the batch's concept targets: train with the "
            "ConceptBankRefresh callback, which loss=concept adds as callbacks.concept_bank"
        )
    if len(named) != rows or len(hypernyms) != rows:
        raise RuntimeError(f"ConceptLoss got concept targets for {len(named)} rows and features for {rows}")


class ConceptLoss(TrainingLoss):
    """`base` + `concept_weight` x (named-concept term + `hypernym_weight` x hypernym term
    + `prototype_weight` x visual-prototype term)."""

    def __init__(
        self,
        base: ContrastiveLoss,
        concept_weight: float = 0.5,
        hypernym_weight: float = 0.5,
        prototype_weight: float = 0.0,
    ) -> None:
        super().__init__()
        check_weights(concept_weight, hypernym_weight, prototype_weight)
        self.base = base
        self.concept_weight = concept_weight
        self.hypernym_weight = hypernym_weight
        self.prototype_weight = prototype_weight
        self.register_buffer("bank", torch.empty(0), persistent=False)
        self.register_buffer("prototype_bank", torch.empty(0), persistent=False)
        self.register_buffer("has_prototype", torch.empty(0, dtype=torch.bool), persistent=False)

    @property
    def uses_logit_bias(self) -> bool:
        """The module adds a bias when the base loss needs one."""
        return self.base.uses_logit_bias

    @property
    def init_logit_scale(self) -> float | None:
        """The base loss's starting scale for models that lack its parameters."""
        return self.base.init_logit_scale

    @property
    def init_logit_bias(self) -> float | None:
        """The base loss's starting bias for models that lack one."""
        return self.base.init_logit_bias

    @property
    def uses_prototypes(self) -> bool:
        """Whether the prototype term is on, so the bank needs visual prototypes too."""
        return self.prototype_weight > 0

    def set_bank(
        self,
        bank: torch.Tensor,
        prototype_bank: torch.Tensor | None = None,
        has_prototype: torch.Tensor | None = None,
    ) -> None:
        """The (concepts, dim) unit-norm prompt embeddings, and the prototypes (with which concepts have one)
        when the prototype term is on; held fixed until the next call."""
        if self.uses_prototypes and (prototype_bank is None or has_prototype is None):
            raise ValueError(
                f"loss.prototype_weight={self.prototype_weight} needs the prototype bank and its mask"
            )
        self.bank = bank
        if prototype_bank is not None and has_prototype is not None:
            self.prototype_bank = prototype_bank
            self.has_prototype = has_prototype.to(bank.device)

    def batch_inputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor | None]:
        """The base loss's inputs plus the concept targets the callback added to the batch."""
        return {
            **self.base.batch_inputs(batch),
            "named": batch.get(NAMED_TARGETS),
            "hypernyms": batch.get(HYPERNYM_TARGETS),
        }

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        distributed: bool = True,
        product: torch.Tensor | None = None,
        caption: torch.Tensor | None = None,
        named: torch.Tensor | None = None,
        hypernyms: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The weighted sum; `named` and `hypernyms` are (batch, concepts) 0/1 targets over the bank's rows.

        `terms` keeps each term (detached) for the module to log.
        """
        check_targets(named, hypernyms, len(image_features), len(self.bank))
        base = self.base(
            image_features,
            text_features,
            logit_scale,
            logit_bias,
            distributed,
            product=product,
            caption=caption,
        )
        logits = logit_scale * image_features.float() @ self.bank.T
        concept = multi_positive_nce(logits, named, distributed)
        hypernym = multi_positive_nce(logits, hypernyms, distributed)
        terms = {"base": base, "concept": concept, "hypernym": hypernym}
        if self.uses_prototypes:
            prototype_logits = logit_scale * image_features.float() @ self.prototype_bank.T
            terms["prototype"] = multi_positive_nce(prototype_logits, named * self.has_prototype, distributed)
        self.terms = {name: value.detach() for name, value in terms.items()}
        extra = self.prototype_weight * terms["prototype"] if self.uses_prototypes else 0.0
        return base + self.concept_weight * (concept + self.hypernym_weight * hypernym + extra)
