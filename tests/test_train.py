"""The train entry point end to end on `tiny`: both losses, checkpoints, resume."""

from __future__ import annotations

import copy
import json

import lightning as L
import pytest
import torch

from fashion_clip.train import train

FAST = ("model=tiny", "trainer=cpu", "data.num_workers=0", "data.batch_size=16", "data.eval_batch_size=32")


@pytest.mark.parametrize("loss", ["infonce", "siglip"])
def test_fast_dev_run_both_losses(compose_train, small_catalogue, tmp_path, loss: str) -> None:
    cfg = compose_train(*FAST, f"loss={loss}", "trainer.fast_dev_run=2", data_dir=small_catalogue)
    results = train(cfg)
    after = results["after"]
    assert set(results) == {"before", "after"}
    assert 0.0 <= after["test/mean_recall"] <= 1.0
    assert after["test/skipped_samples"] == 0
    saved = json.loads((tmp_path / "run" / "recall_before_after.json").read_text())
    assert saved["after"]["test/mean_recall"] == pytest.approx(after["test/mean_recall"])


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
        *FAST, *overrides, "trainer.max_steps=3", "test_before_fit=false", data_dir=small_catalogue
    )
    if "knowledge_dir" in cfg.loss:
        cfg.loss.knowledge_dir = str(tmp_path / "kb")
    after = train(cfg)["after"]
    assert 0.0 <= after["test/mean_recall"] <= 1.0
    assert torch.isfinite(torch.tensor(after["test/loss"]))


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
    common = (*FAST, "test_before_fit=false", "test_after_fit=false", "trainer.check_val_every_n_epoch=100")
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
