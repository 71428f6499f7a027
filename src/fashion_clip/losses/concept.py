"""FashionKLIP-style concept injection: the base contrastive loss plus image-to-concept alignment.

Each image is pulled towards the prompts of the concepts its caption names (several positives) and,
at `hypernym_weight`, towards their hypernyms, in a softmax over the whole concept bank. The bank is the
concept prompts embedded by the current text tower, re-embedded every `refresh_every` optimizer steps
(FashionKLIP's update option) and held fixed in between: the concept term trains the image side only.
With `prototype_weight > 0` the image is also pulled, the same way, towards the visual prototypes of its
named concepts (the mean embedding of each concept's example images, re-embedded on the same schedule).

The module hands each batch to `observe_batch(model, batch, step)` before calling the loss: it refreshes
the bank when due and turns the batch's captions into targets. `last_terms` holds each term for logging.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.knowledge.build import build_knowledge_base
from fashion_clip.knowledge.concepts import Concept
from fashion_clip.knowledge.fashionklip_kb import QUERIES, read_knowledge_base
from fashion_clip.knowledge.matching import ConceptMatcher
from fashion_clip.knowledge.prototypes import ConceptPrototypes
from fashion_clip.losses.base import ContrastiveLoss, rank_and_world_size

log = logging.getLogger(__name__)

BANK_CHUNK = 256


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


def check_weights(
    concept_weight: float, hypernym_weight: float, prototype_weight: float, refresh_every: int
) -> None:
    """Reject settings that would silently disable or invert the concept term."""
    if min(concept_weight, hypernym_weight, prototype_weight) < 0:
        raise ConfigError(
            f"loss.concept_weight={concept_weight}, loss.hypernym_weight={hypernym_weight}, "
            f"loss.prototype_weight={prototype_weight}: weights must be at least 0 (0 turns a term off)"
        )
    if refresh_every < 1:
        raise ConfigError(
            f"loss.refresh_every={refresh_every} must be at least 1 (optimizer steps between re-embeddings "
            "of the concept bank by the text tower)"
        )


def knowledge_dir_ready(knowledge_dir: str | Path, build_from: str | Sequence[str] | None) -> Path:
    """The knowledge base, built from the training data first when the directory has none yet."""
    root = Path(knowledge_dir).expanduser()
    if (root / QUERIES).is_file() or build_from is None:
        return root
    log.info("no knowledge base in %s: building one from %s", root, build_from)
    try:
        build_knowledge_base(build_from, root)
    except MissingInputError as e:
        raise MissingInputError(
            f"loss.knowledge_dir '{root}' is empty and loss.build_from failed: {e}"
        ) from e
    return root


def prototype_source(
    concepts: Sequence[Concept], prototype_weight: float, prototype_data: str | Sequence[str] | None
) -> ConceptPrototypes | None:
    """The example images behind the prototype term, read once; None when the term is off."""
    if prototype_weight == 0:
        return None
    if prototype_data is None:
        raise ConfigError(
            f"loss.prototype_weight={prototype_weight} needs loss.prototype_data: the training shards that "
            "hold the knowledge base's example images (e.g. loss.prototype_data=${data.train})"
        )
    return ConceptPrototypes(concepts, prototype_data)


def forget_bank(loss: ConceptLoss, incompatible_keys: object) -> None:
    """Weights loaded from a checkpoint (resume, test of the best one) make the bank stale: re-embed it."""
    loss.refreshed_at = None


class ConceptLoss(nn.Module):
    """`base` + `concept_weight` x (named-concept term + `hypernym_weight` x hypernym term
    + `prototype_weight` x visual-prototype term)."""

    def __init__(
        self,
        base: ContrastiveLoss,
        knowledge_dir: str | Path,
        tokenizer: Callable[[list[str]], torch.Tensor],
        concept_weight: float = 0.5,
        hypernym_weight: float = 0.5,
        refresh_every: int = 100,
        build_from: str | Sequence[str] | None = None,
        prototype_weight: float = 0.0,
        prototype_data: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        check_weights(concept_weight, hypernym_weight, prototype_weight, refresh_every)
        knowledge = read_knowledge_base(knowledge_dir_ready(knowledge_dir, build_from))
        if knowledge.skipped:
            log.warning("knowledge base %s: skipped %s", knowledge_dir, dict(knowledge.skipped))
        self.base = base
        self.concept_weight = concept_weight
        self.hypernym_weight = hypernym_weight
        self.refresh_every = refresh_every
        self.prototype_weight = prototype_weight
        self.prototypes = prototype_source(knowledge.concepts, prototype_weight, prototype_data)
        self.matcher = ConceptMatcher(knowledge.concepts)
        self.register_buffer(
            "prompt_tokens", tokenizer([c.prompt for c in knowledge.concepts]), persistent=False
        )
        self.register_buffer("bank", torch.empty(0), persistent=False)
        self.register_buffer("prototype_bank", torch.empty(0), persistent=False)
        self.refreshed_at: int | None = None
        self.targets: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last_terms: dict[str, torch.Tensor] = {}
        self.register_load_state_dict_post_hook(forget_bank)

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

    @torch.inference_mode(False)
    @torch.no_grad()
    def refresh(self, model: nn.Module, step: int) -> None:
        """Re-embed every concept prompt (and prototype) with the current towers, a chunk at a time.

        Outside inference mode even when called from Lightning's test loop, since training reuses the bank.
        Evaluation mode while embedding, so prototypes do not depend on dropout or batch statistics.
        """
        training = model.training
        model.eval()
        chunks = [
            model.encode_text(tokens, normalize=True).float()
            for tokens in self.prompt_tokens.split(BANK_CHUNK)
        ]
        self.bank = torch.cat(chunks)
        if self.prototypes is not None:
            self.prototype_bank = self.prototypes.embed(model, self.bank.device, BANK_CHUNK)
        model.train(training)
        self.refreshed_at = step

    def observe_batch(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> None:
        """Refresh the bank when `refresh_every` steps have passed, and read the batch's concept targets."""
        if self.refreshed_at is None or step - self.refreshed_at >= self.refresh_every:
            self.refresh(model, step)
        named, hypernyms = self.matcher.targets(batch["caption"])
        self.targets = named.to(self.bank.device), hypernyms.to(self.bank.device)

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
        """The weighted sum; `last_terms` keeps each term (detached) for the module to log."""
        if self.targets is None or len(self.targets[0]) != len(image_features):
            raise RuntimeError("ConceptLoss needs observe_batch(model, batch, step) with this batch first")
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
        concept = multi_positive_nce(logits, self.targets[0], distributed)
        hypernym = multi_positive_nce(logits, self.targets[1], distributed)
        terms = {"base": base, "concept": concept, "hypernym": hypernym}
        if self.prototypes is not None:
            prototype_logits = logit_scale * image_features.float() @ self.prototype_bank.T
            with_prototype = self.targets[0] * self.prototypes.available.to(self.targets[0].device)
            terms["prototype"] = multi_positive_nce(prototype_logits, with_prototype, distributed)
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        extra = self.prototype_weight * terms["prototype"] if self.prototypes is not None else 0.0
        return base + self.concept_weight * (concept + self.hypernym_weight * hypernym + extra)
