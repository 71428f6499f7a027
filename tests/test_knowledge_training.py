"""A `tiny` training run with `loss=concept` on the demo catalogue, knowledge base built on first use."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from helpers.config_presets import preset_names
from hydra.core.hydra_config import HydraConfig

from fashion_clip.knowledge.bank_refresh import ConceptBankRefresh
from fashion_clip.knowledge.fashionklip_kb import QUERIES
from fashion_clip.training import train

FAST = ("model=tiny", "trainer=cpu", "data.num_workers=0", "data.batch_size=16", "data.eval_batch_size=32")


class RecordLogged(L.Callback):
    """The metric names a run logged, so the test can check each loss term has its own curve, and the step
    of the bank used at each training step."""

    def __init__(self) -> None:
        self.refreshed_at: list[int | None] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        bank = next(c for c in trainer.callbacks if isinstance(c, ConceptBankRefresh))
        self.refreshed_at.append(bank.refreshed_at)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.names = set(trainer.logged_metrics)


@pytest.mark.slow
def test_concept_loss_trains_and_logs_each_term(compose_train, small_catalogue: Path, tmp_path: Path) -> None:
    knowledge = tmp_path / "kb"
    cfg = compose_train(
        *FAST,
        "loss=concept",
        f"callbacks.concept_bank.knowledge_dir={knowledge}",
        "callbacks.concept_bank.refresh_every=2",
        "loss.prototype_weight=0.5",
        "trainer.max_steps=3",
        "+trainer.limit_val_batches=1",
        data_dir=small_catalogue,
    )
    record = RecordLogged()
    results = train(cfg, extra_callbacks=[record])
    assert (knowledge / QUERIES).is_file()
    assert 0.0 <= results["after"]["full/mean_recall"] <= 1.0
    terms = ("base", "concept", "hypernym", "prototype")
    assert {f"train/loss_{term}" for term in terms} <= record.names
    assert record.refreshed_at == [0, 0, 2]  # embedded at the first step, then every 2 steps


def test_knowledge_study_sweeps_base_against_concept_on_the_same_setup(compose_train) -> None:
    cfg = compose_train("experiment=knowledge_study", "loss=concept", "loss@loss.base=siglip")
    assert HydraConfig.get().sweeper.params == {"loss": "infonce,concept"}
    assert cfg.task_name == "knowledge_study" and cfg.model.name == "FashionCLIP-Tiny"
    assert list(cfg.protocol) == ["full", "sample100"]
    assert cfg.loss._target_ == "fashion_clip.losses.concept.ConceptLoss"
    assert cfg.loss.base._target_ == "fashion_clip.losses.SigLipLoss"
    assert cfg.callbacks.concept_bank.knowledge_dir.endswith("knowledge/demo")


def test_only_loss_concept_adds_the_bank_callback(compose_train) -> None:
    concept = compose_train("loss=concept", "loss.base.positives=product")
    assert concept.callbacks.concept_bank._target_.endswith("ConceptBankRefresh")
    assert concept.loss.base.positives == "product"
    assert "concept_bank" not in compose_train("loss=infonce").callbacks


def test_concept_loss_composes_with_every_model_preset(compose_train) -> None:
    """The concept prompts are tokenized by each model's own tokenizer, whatever the preset."""
    presets = preset_names("model")
    assert {"vitb32", "vitb16", "siglip2_vitb16_256", "tiny"} <= set(presets)
    for preset in presets:
        cfg = compose_train(f"model={preset}", "loss=concept", "loss@loss.base=siglip")
        assert cfg.callbacks.concept_bank.tokenizer.name == cfg.model.name
        assert cfg.callbacks.concept_bank.tokenizer.tokenizer == cfg.model.tokenizer
