"""Fused AdamW by default, and the unfused one with a log line where Lightning would refuse the fused one."""

from __future__ import annotations

import functools
import logging

import lightning as L
import pytest
import torch
from helpers.lightning_trainer import fit_one_step
from helpers.tiny_model import random_tiny, training_batch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision

from fashion_clip.losses import InfoNCELoss
from fashion_clip.models.clip_module import ClipModule
from fashion_clip.optim import build_optimizer, fused_refusal, param_groups

FALLBACK_LOG = "optimizer.fused=true: using the unfused optimizer instead"


def clipped_gradients(optimizer: torch.optim.Optimizer, plugin: MixedPrecision) -> None:
    """Lightning's clipping of one gradient under `plugin`, as trainer.gradient_clip_val runs it."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = torch.ones_like(param)
    plugin.clip_gradients(optimizer, clip_val=1.0)


@pytest.fixture
def adamw(compose_train) -> functools.partial:
    """The optimizer our default config builds."""
    return instantiate(compose_train("model=tiny").optimizer)


@pytest.fixture
def params() -> list[dict]:
    return param_groups(torch.nn.Linear(4, 2).named_parameters())


def test_default_config_builds_a_fused_adamw(adamw, params) -> None:
    optimizer = build_optimizer(adamw, params, fused_refusal("cpu", mixed_precision=True, clipping=False))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True


@pytest.mark.parametrize(
    ("device", "mixed", "clipping", "refused"),
    [
        ("cpu", False, False, False),
        ("cpu", False, True, False),  # 32-true clips any optimizer's gradients
        ("cpu", True, False, False),  # a GradScaler steps a fused optimizer itself
        ("cpu", True, True, True),
        ("cuda", True, True, True),
        ("xla", False, False, True),  # torch has no fused kernels there
    ],
)
def test_fused_is_refused_only_where_it_cannot_run(device: str, mixed: bool, clipping: bool, refused: bool):
    assert (fused_refusal(device, mixed, clipping) is not None) == refused


@pytest.mark.parametrize(
    "plugin",
    [
        MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu")),  # the GPU's fp16 + GradScaler
        MixedPrecision("bf16-mixed", "cpu"),
    ],
    ids=["fp16-scaler", "bf16"],
)
def test_fallback_is_what_lightning_clips(adamw, params, plugin: MixedPrecision, caplog) -> None:
    """Lightning refuses to clip the fused optimizer under either mixed precision; the fallback clips."""
    with pytest.raises(RuntimeError, match="does not allow for gradient clipping"):
        clipped_gradients(build_optimizer(adamw, params, None), plugin)
    refusal = fused_refusal("cpu", mixed_precision=True, clipping=True)
    with caplog.at_level(logging.WARNING, logger="fashion_clip.optim"):
        fallback = build_optimizer(adamw, params, refusal)
    assert not fallback.defaults["fused"] and isinstance(fallback, torch.optim.AdamW)
    clipped_gradients(fallback, plugin)
    (record,) = caplog.records
    assert FALLBACK_LOG in record.getMessage()
    assert "gradient clipping under mixed precision" in record.getMessage()


def test_an_optimizer_not_asking_for_fused_is_built_as_configured(params, caplog) -> None:
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    assert isinstance(build_optimizer(sgd, params, "any reason"), torch.optim.SGD)
    assert not caplog.records


class RecordOptimizer(L.Callback):
    """Whether the optimizer the run trained with was fused."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fused = trainer.optimizers[0].defaults["fused"]


def fit_bf16_step(optimizer: functools.partial, **trainer_options) -> bool:
    """One bf16-mixed step of tiny through a real Trainer; whether it ran fused."""
    model = random_tiny(0)
    module = ClipModule(model, InfoNCELoss(), optimizer)
    record = RecordOptimizer()
    fit_one_step(
        module,
        [training_batch(model, 4, seed=0)],
        precision="bf16-mixed",
        callbacks=[record],
        **trainer_options,
    )
    return bool(record.fused)


def test_clipped_mixed_precision_fit_falls_back_instead_of_failing(adamw, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="fashion_clip.optim"):
        assert fit_bf16_step(adamw, gradient_clip_val=1.0) is False
    assert [r for r in caplog.records if FALLBACK_LOG in r.getMessage()]
    assert fit_bf16_step(adamw) is True, "without clipping the run keeps the fused default"
