"""A `tiny` training run with `loss=concept` on the demo catalogue, knowledge base built on first use."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig

from fashion_clip.config import CONFIG_DIR
from fashion_clip.knowledge.fashionklip_kb import QUERIES
from fashion_clip.train import train

FAST = ("model=tiny", "trainer=cpu", "data.num_workers=0", "data.batch_size=16", "data.eval_batch_size=32")


class RecordLogged(L.Callback):
    """The metric names a run logged, so the test can check each loss term has its own curve."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.names = set(trainer.logged_metrics)
        self.refreshed_at = pl_module.loss.refreshed_at


def test_concept_loss_trains_and_logs_each_term(compose_train, small_catalogue: Path, tmp_path: Path) -> None:
    knowledge = tmp_path / "kb"
    cfg = compose_train(
        *FAST,
        "loss=concept",
        f"loss.knowledge_dir={knowledge}",
        "loss.refresh_every=2",
        "loss.prototype_weight=0.5",
        "trainer.max_steps=3",
        "+trainer.limit_val_batches=1",
        data_dir=small_catalogue,
    )
    record = RecordLogged()
    results = train(cfg, extra_callbacks=[record])
    assert (knowledge / QUERIES).is_file()
    assert 0.0 <= results["after"]["test/mean_recall"] <= 1.0
    terms = ("base", "concept", "hypernym", "prototype")
    assert {f"train/loss_{term}" for term in terms} <= record.names
    assert record.refreshed_at == 2


def test_knowledge_study_sweeps_base_against_concept_on_the_same_setup(compose_train) -> None:
    cfg = compose_train("experiment=knowledge_study", "loss=concept", "loss@loss.base=siglip")
    assert HydraConfig.get().sweeper.params == {"loss": "infonce,concept"}
    assert cfg.task_name == "knowledge_study" and cfg.model.name == "FashionCLIP-Tiny"
    assert list(cfg.protocol) == ["full", "sample100"]
    assert cfg.loss._target_ == "fashion_clip.losses.concept.ConceptLoss"
    assert cfg.loss.base._target_ == "fashion_clip.losses.SigLipLoss"
    assert cfg.loss.knowledge_dir.endswith("knowledge/demo")


def test_concept_loss_composes_with_every_model_preset(compose_train) -> None:
    """The concept prompts are tokenized by each model's own tokenizer, whatever the preset."""
    presets = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
    assert {"vitb32", "vitb16", "siglip2_vitb16_256", "tiny"} <= set(presets)
    for preset in presets:
        cfg = compose_train(f"model={preset}", "loss=concept", "loss@loss.base=siglip")
        assert cfg.loss.tokenizer.name == cfg.model.name
        assert cfg.loss.tokenizer.tokenizer == cfg.model.tokenizer
