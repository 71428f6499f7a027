"""The train entry point end to end on `tiny`: both losses, checkpoints, resume."""

from __future__ import annotations

import copy
import json

import lightning as L
import pytest
import torch
from helpers.train_overrides import TINY_ON_CPU

from fashion_clip.records import read_results
from fashion_clip.training import train

pytestmark = pytest.mark.slow  # every test runs `train` on the small catalogue


@pytest.mark.parametrize("loss", ["infonce", "siglip"])
def test_fast_dev_run_both_losses(compose_train, small_catalogue, tmp_path, loss: str) -> None:
    cfg = compose_train(*TINY_ON_CPU, f"loss={loss}", "trainer.fast_dev_run=2", data_dir=small_catalogue)
    results = train(cfg)
    after = results["after"]
    assert set(results) == {"before", "after"}
    assert 0.0 <= after["full/mean_recall"] <= 1.0
    assert after["full/skipped"] == 0
    saved = json.loads((tmp_path / "run" / "recall_before_after.json").read_text())
    assert saved["after"]["full/mean_recall"] == pytest.approx(after["full/mean_recall"])
    # one scoring per stage: the before/after table holds the numbers evaluation_results.json holds
    records = {r.stage: r for r in read_results(tmp_path / "run" / "evaluation_results.json")}
    assert records["finetuned"].metrics["mean_recall"] == after["full/mean_recall"]
    assert records["base"].metrics["mean_recall"] == results["before"]["full/mean_recall"]
    table = (tmp_path / "run" / "recall_before_after.md").read_text()
    assert f"| full | mean_recall | {records['base'].metrics['mean_recall']:.4f} |" in table


@pytest.mark.parametrize(
    "overrides",
    [
        ("loss=infonce", "loss.positives=product", "data.batching=product_unique"),
        (
            "loss=siglip",
            "loss.positives=product",
            "loss.same_caption_positive=true",
            "data.batching=category_hard",
        ),
        ("loss=concept", "loss.base.positives=product", "data.batching=category_hard"),
    ],
)
def test_product_aware_runs_train_and_evaluate(compose_train, small_catalogue, tmp_path, overrides) -> None:
    cfg = compose_train(
        *TINY_ON_CPU, *overrides, "trainer.max_steps=3", "test_before_fit=false", data_dir=small_catalogue
    )
    if "concept_bank" in cfg.callbacks:
        cfg.callbacks.concept_bank.knowledge_dir = str(tmp_path / "kb")
    losses = LastTrainLoss()
    after = train(cfg, extra_callbacks=[losses])["after"]
    assert 0.0 <= after["full/mean_recall"] <= 1.0
    assert torch.isfinite(losses.loss)


class LastTrainLoss(L.Callback):
    """The last logged training loss, which a run with product positives must keep finite."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.loss = trainer.callback_metrics["train/loss"]


def _checkpoint_step_and_optimizer(path) -> tuple[int, dict]:
    """What a resumed run must continue from: the step and Adam's moments."""
    ckpt = torch.load(path, weights_only=False)
    return ckpt["global_step"], ckpt["optimizer_states"][0]


class RecordResumeState(L.Callback):
    """Captures the step and optimizer state a resumed fit starts with."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.step = trainer.global_step
        self.optimizer_state = copy.deepcopy(trainer.optimizers[0].state_dict())


def test_resume_continues_from_saved_step_and_optimizer_state(
    compose_train, small_catalogue, tmp_path
) -> None:
    common = (
        *TINY_ON_CPU,
        "test_before_fit=false",
        "test_after_fit=false",
        "trainer.check_val_every_n_epoch=100",
    )
    cfg = compose_train(*common, "trainer.max_steps=3", data_dir=small_catalogue)
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    step, optimizer_state = _checkpoint_step_and_optimizer(last)
    assert step == 3

    recorder = RecordResumeState()
    cfg = compose_train(*common, "trainer.max_steps=5", f"ckpt_path={last}", data_dir=small_catalogue)
    train(cfg, extra_callbacks=[recorder])
    assert recorder.step == 3
    resumed = recorder.optimizer_state["state"]
    assert resumed.keys() == optimizer_state["state"].keys()
    for index, moments in optimizer_state["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(resumed[index][name]), torch.as_tensor(moments[name]))
