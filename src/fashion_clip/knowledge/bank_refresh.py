"""The callback behind `loss=concept`: the knowledge base, the concept bank's refresh and the batch targets.

At setup it reads the knowledge base (built from the training data first when the directory has none)
and tokenizes the concept prompts. Before each train and validation batch it re-embeds the bank
into the ConceptLoss when `refresh_every` optimizer steps have passed since the last refresh (FashionKLIP's
update option), and adds the concepts the batch's captions name, and their hypernyms, as target tensors.
Loading weights (resume, the best checkpoint) makes the bank stale: the next batch re-embeds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.knowledge.build import build_missing_knowledge_base
from fashion_clip.knowledge.concepts import Concept, ConceptMatcher
from fashion_clip.knowledge.fashionklip_kb import read_knowledge_base
from fashion_clip.knowledge.prototypes import ConceptPrototypes
from fashion_clip.losses.concept import HYPERNYM_TARGETS, NAMED_TARGETS, ConceptLoss

log = logging.getLogger(__name__)

BANK_CHUNK = 256
KEY = "callbacks.concept_bank"


def knowledge_dir_ready(knowledge_dir: str | Path, build_from: str | Sequence[str] | None) -> Path:
    """The knowledge base, built from the training data first when the directory has none yet (by rank 0
    alone when a process group runs, the other ranks waiting for it)."""
    root = Path(knowledge_dir).expanduser()
    if build_from is None:
        return root
    try:
        build_missing_knowledge_base(build_from, root)
    except MissingInputError as e:
        raise MissingInputError(
            f"{KEY}.knowledge_dir '{root}' is empty and {KEY}.build_from failed: {e}"
        ) from e
    return root


def prototype_source(
    concepts: Sequence[Concept], uses_prototypes: bool, prototype_data: str | Sequence[str] | None
) -> ConceptPrototypes | None:
    """The example images behind the prototype term, read once; None when the term is off."""
    if not uses_prototypes:
        return None
    if prototype_data is None:
        raise ConfigError(
            f"loss.prototype_weight > 0 needs {KEY}.prototype_data: the training shards that hold the "
            f"knowledge base's example images (e.g. {KEY}.prototype_data=${{data.train}})"
        )
    return ConceptPrototypes(concepts, prototype_data)


def concept_loss(pl_module: L.LightningModule) -> ConceptLoss:
    """The module's loss, which must be the one this callback feeds."""
    if not isinstance(pl_module.loss, ConceptLoss):
        raise ConfigError(
            f"{KEY} embeds the concept bank of loss=concept, but the loss is {type(pl_module.loss).__name__}"
        )
    return pl_module.loss


class ConceptBankRefresh(L.Callback):
    """Feeds a ConceptLoss: its bank, re-embedded every `refresh_every` steps, and each batch's targets."""

    def __init__(
        self,
        knowledge_dir: str | Path,
        tokenizer: Callable[[list[str]], torch.Tensor],
        refresh_every: int = 100,
        build_from: str | Sequence[str] | None = None,
        prototype_data: str | Sequence[str] | None = None,
    ) -> None:
        if refresh_every < 1:
            raise ConfigError(
                f"{KEY}.refresh_every={refresh_every} must be at least 1 (optimizer steps between "
                "re-embeddings of the concept bank by the text tower)"
            )
        self.knowledge_dir = knowledge_dir
        self.tokenizer = tokenizer
        self.refresh_every = refresh_every
        self.build_from = build_from
        self.prototype_data = prototype_data
        self.matcher: ConceptMatcher | None = None
        self.prompt_tokens = torch.empty(0, dtype=torch.long)
        self.prototypes: ConceptPrototypes | None = None
        self.refreshed_at: int | None = None

    def load(self, uses_prototypes: bool) -> None:
        """Read the knowledge base (building it when missing), tokenize its prompts, read example images."""
        knowledge = read_knowledge_base(knowledge_dir_ready(self.knowledge_dir, self.build_from))
        if knowledge.skipped:
            log.warning("knowledge base %s: skipped %s", self.knowledge_dir, dict(knowledge.skipped))
        self.matcher = ConceptMatcher(knowledge.concepts)
        self.prompt_tokens = self.tokenizer([c.prompt for c in knowledge.concepts])
        self.prototypes = prototype_source(knowledge.concepts, uses_prototypes, self.prototype_data)

    @torch.inference_mode(False)
    @torch.no_grad()
    def refresh(self, model: nn.Module, loss: ConceptLoss, step: int) -> None:
        """Re-embed every concept prompt (and prototype) with the current towers, a chunk at a time.

        Outside inference mode even when called from Lightning's validation loop: training reuses the bank.
        Evaluation mode while embedding, so prototypes do not depend on dropout or batch statistics.
        """
        training = model.training
        model.eval()
        device = next(model.parameters()).device
        bank = torch.cat(
            [
                model.encode_text(tokens.to(device), normalize=True).float()
                for tokens in self.prompt_tokens.split(BANK_CHUNK)
            ]
        )
        if self.prototypes is None:
            loss.set_bank(bank)
        else:
            prototypes = self.prototypes.embed(model, bank.device, BANK_CHUNK)
            loss.set_bank(bank, prototypes, self.prototypes.available)
        model.train(training)
        self.refreshed_at = step

    def targets(self, captions: Sequence[str], device: torch.device) -> dict[str, torch.Tensor]:
        """The batch keys the loss reads: which bank rows each caption names, and their hypernyms."""
        if self.matcher is None:
            raise RuntimeError("ConceptBankRefresh has no knowledge base yet: load() it (setup does) first")
        named, hypernyms = self.matcher.targets(captions)
        return {NAMED_TARGETS: named.to(device), HYPERNYM_TARGETS: hypernyms.to(device)}

    def forget_bank(self, model: nn.Module, incompatible_keys: object) -> None:
        """Weights loaded into the towers (resume, the best checkpoint) make the bank stale."""
        self.refreshed_at = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Read the knowledge base once per run (the first setup), and watch for loaded weights."""
        loss = concept_loss(pl_module)
        if self.matcher is None:
            self.load(loss.uses_prototypes)
            pl_module.model.register_load_state_dict_post_hook(self.forget_bank)

    def prepare(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict[str, Any]) -> None:
        """Refresh the bank when `refresh_every` steps have passed, and add the batch's concept targets.

        The bank is embedded in the run's precision context (autocast under mixed precision), as the step.
        """
        loss = concept_loss(pl_module)
        step = trainer.global_step
        if self.refreshed_at is None or step - self.refreshed_at >= self.refresh_every:
            with trainer.precision_plugin.forward_context():
                self.refresh(pl_module.model, loss, step)
        batch.update(self.targets(batch["caption"], loss.bank.device))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict[str, Any], batch_idx: int
    ) -> None:
        self.prepare(trainer, pl_module, batch)

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.prepare(trainer, pl_module, batch)
