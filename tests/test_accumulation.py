"""module.accumulate: the whole contrastive batch's gradients at one micro-batch's activation memory."""

from __future__ import annotations

import copy
import functools
import math

import lightning as L
import pytest
import torch
from helpers.lightning_trainer import fit_one_step
from helpers.tiny_model import random_tiny, training_batch
from helpers.train_overrides import TINY_ON_CPU
from lightning.pytorch.plugins.precision import MixedPrecision

from fashion_clip.errors import ConfigError
from fashion_clip.losses import ContrastiveLoss, InfoNCELoss, SigLipLoss
from fashion_clip.models.cached_accumulation import scale_gradient, split_batch
from fashion_clip.models.clip_module import ClipModule
from fashion_clip.training import train

BATCH = 8
# Lightning turns 16-mixed into bf16 on CPU; an explicit scaler exercises the GPU's fp16 loss scaling.
FP16_LOSS_SCALER = torch.amp.GradScaler("cpu", init_scale=2.0**16)


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return random_tiny(0)


@pytest.fixture(scope="module")
def batch(tiny) -> dict[str, torch.Tensor]:
    """Random images and token ids: the gradients' equality holds for any input."""
    return training_batch(tiny, BATCH, seed=1)


def micro_batches(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """The batch as `parts` independent small batches, for Lightning's own accumulation."""
    return [
        {"image": image, "text": text, "skipped": batch["skipped"]}
        for image, text in split_batch(batch["image"], batch["text"], parts)
    ]


class RecordStep(L.Callback):
    """The gradients the optimizer is about to apply (before the module's clipping) and the logged loss."""

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self.gradients = {n: p.grad.clone() for n, p in pl_module.named_parameters() if p.grad is not None}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.loss = trainer.callback_metrics["train/loss"].item()


def fit_sgd_step(
    model: torch.nn.Module,
    loss: ContrastiveLoss,
    batches: list[dict[str, torch.Tensor]],
    trainer_options: dict[str, object] | None = None,
    **module_options,
) -> tuple[ClipModule, RecordStep]:
    """One optimizer step of plain SGD through a real Trainer, on a copy of `model`."""
    module = ClipModule(
        copy.deepcopy(model), loss, optimizer=functools.partial(torch.optim.SGD, lr=1.0), **module_options
    )
    record = RecordStep()
    fit_one_step(module, batches, callbacks=[record], **(trainer_options or {}))
    return module, record


def mismatched(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    """Parameters whose gradients differ by more than float32 summation order can explain."""
    assert actual.keys() == expected.keys()
    return [
        name
        for name, grad in expected.items()
        if not torch.allclose(actual[name], grad, rtol=1e-4, atol=1e-5 * grad.abs().max().item())
    ]


@pytest.mark.parametrize("loss_cls", [InfoNCELoss, SigLipLoss])
def test_gradients_equal_the_big_batch_not_independent_micro_batches(tiny, batch, loss_cls) -> None:
    module, big = fit_sgd_step(tiny, loss_cls(), [batch])
    assert big.gradients.keys() == {name for name, _ in module.named_parameters()}
    for k in (2, 4):
        _, accumulated = fit_sgd_step(tiny, loss_cls(), [batch], accumulate=k)
        _, independent = fit_sgd_step(
            tiny, loss_cls(), micro_batches(batch, k), {"accumulate_grad_batches": k}
        )
        assert mismatched(accumulated.gradients, big.gradients) == []
        assert accumulated.loss == pytest.approx(big.loss, rel=1e-5)
        assert len(mismatched(independent.gradients, big.gradients)) > len(big.gradients) // 2
        assert independent.loss != pytest.approx(big.loss, rel=1e-3)


@pytest.mark.parametrize(
    "loss", [InfoNCELoss(positives="product", same_caption_positive=True), SigLipLoss(positives="product")]
)
def test_product_positives_accumulate_to_the_big_batch(tiny, batch, loss) -> None:
    """Product ids and caption keys of the whole batch reach every micro-step's loss."""
    keyed = {
        **batch,
        "product": torch.tensor([0, 5, 0, 1, 5, 2, 3, 0]),
        "caption_key": torch.arange(BATCH) % 6,
    }
    _, big = fit_sgd_step(tiny, loss, [keyed])
    _, pairs = fit_sgd_step(tiny, type(loss)(), [keyed])
    _, accumulated = fit_sgd_step(tiny, loss, [keyed], accumulate=4)
    assert mismatched(accumulated.gradients, big.gradients) == []
    assert accumulated.loss == pytest.approx(big.loss, rel=1e-5)
    assert pairs.loss != pytest.approx(big.loss, rel=1e-3)


@pytest.mark.parametrize(
    "trainer_options",
    [None, {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=FP16_LOSS_SCALER)]}],
    ids=["fp32", "fp16-loss-scaler"],
)
def test_clips_the_accumulated_gradient_norm(tiny, batch, trainer_options: dict | None) -> None:
    """SGD at lr=1 steps by the clipped gradient; clipping fp16 gradients before unscaling would shrink it."""
    clip = 1e-3
    module, record = fit_sgd_step(
        tiny, InfoNCELoss(), [batch], trainer_options, accumulate=2, gradient_clip_val=clip
    )
    before = dict(tiny.named_parameters())
    step = torch.stack([(p.detach() - before[n]).norm() for n, p in module.model.named_parameters()]).norm()
    unclipped = torch.stack([g.norm() for g in record.gradients.values()]).norm()
    assert unclipped > 100 * clip
    assert step.item() == pytest.approx(clip, rel=1e-3)


def test_scale_gradient_keeps_the_value_and_scales_the_gradient() -> None:
    x = torch.tensor([0.3, -2.0, 7.1], requires_grad=True)
    y = scale_gradient(x, 1 / 3)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1.0, 2.0, 3.0]) / 3)


class RecordTraining(L.Callback):
    """What a fit changed: optimizer steps, scheduler steps and the weights."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.weights = pl_module.model.visual.conv1.weight.detach().clone()
        self.scheduler_steps = trainer.lr_scheduler_configs[0].scheduler.last_epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.automatic = pl_module.automatic_optimization
        self.global_step = trainer.global_step
        self.scheduler_steps = trainer.lr_scheduler_configs[0].scheduler.last_epoch - self.scheduler_steps
        self.moved = not torch.equal(self.weights, pl_module.model.visual.conv1.weight)
        self.loss = trainer.callback_metrics["train/loss"].item()


def test_training_run_steps_optimizer_and_scheduler(compose_train, small_catalogue) -> None:
    cfg = compose_train(
        *TINY_ON_CPU,
        "module.accumulate=2",
        "module.gradient_clip_val=1.0",
        "trainer.fast_dev_run=2",
        "test_before_fit=false",
        "test_after_fit=false",
        data_dir=small_catalogue,
    )
    record = RecordTraining()
    train(cfg, extra_callbacks=[record])
    assert record.automatic is False
    assert record.global_step == 2 and record.scheduler_steps == 2
    assert record.moved and math.isfinite(record.loss)


class RecordSetup(L.Callback):
    """Whether a run got as far as setting up (reading data, moving the model)."""

    started = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.started = True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("module.accumulate=3",), r"data\.batch_size=16 is not divisible by module\.accumulate=3"),
        (
            ("module.accumulate=2", "trainer.accumulate_grad_batches=2"),
            r"trainer\.accumulate_grad_batches=2 with module\.accumulate=2.*use only module\.accumulate",
        ),
        (("module.accumulate=2", "trainer.gradient_clip_val=0.5"), r"module\.gradient_clip_val=0\.5"),
    ],
)
def test_conflicts_with_data_or_trainer_fail_before_any_work(
    compose_train, small_catalogue, overrides: tuple[str, ...], message: str
) -> None:
    record = RecordSetup()
    with pytest.raises(ConfigError, match=message):
        train(compose_train(*TINY_ON_CPU, *overrides, data_dir=small_catalogue), extra_callbacks=[record])
    assert not record.started


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"accumulate": 0}, r"module\.accumulate=0 must be at least 1"),
        ({"accumulate": 1, "gradient_clip_val": 1.0}, r"module\.gradient_clip_val=1\.0 only applies"),
        ({"accumulate": 2, "gradient_clip_val": 0.0}, r"module\.gradient_clip_val=0\.0 must be positive"),
    ],
)
def test_invalid_options_fail_at_construction(tiny, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClipModule(copy.deepcopy(tiny), InfoNCELoss(), optimizer=torch.optim.SGD, **options)
