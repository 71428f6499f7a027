"""LightningModule details: logit parameters per loss, AdamW groups, the LR schedule, temperature clamp."""

from __future__ import annotations

import math

import pytest
import torch

from fashion_clip.losses import InfoNCELoss, SigLipLoss
from fashion_clip.models.clip_module import ClipModule, ensure_logit_params
from fashion_clip.models.factory import create_model
from fashion_clip.optim import param_groups, warmup_cosine


@pytest.fixture
def tiny():
    return create_model("FashionCLIP-Tiny")[0]


def test_siglip_adds_bias_and_resets_scale_on_models_without_one(tiny) -> None:
    assert tiny.logit_bias is None
    ensure_logit_params(tiny, SigLipLoss())
    assert tiny.logit_bias.item() == pytest.approx(-10.0)
    assert tiny.logit_scale.item() == pytest.approx(math.log(10))
    assert any(p is tiny.logit_bias for p in tiny.parameters())


def test_siglip_keeps_a_pretrained_bias_and_scale(tiny) -> None:
    tiny.logit_bias = torch.nn.Parameter(torch.tensor([-12.5]))
    tiny.logit_scale.data.fill_(4.7)
    ensure_logit_params(tiny, SigLipLoss())
    assert tiny.logit_bias.item() == pytest.approx(-12.5)
    assert tiny.logit_scale.item() == pytest.approx(4.7)


def test_infonce_leaves_the_model_alone(tiny) -> None:
    scale = tiny.logit_scale.item()
    ensure_logit_params(tiny, InfoNCELoss())
    assert tiny.logit_bias is None and tiny.logit_scale.item() == scale


def test_no_weight_decay_on_biases_norms_embeddings_and_temperature(tiny) -> None:
    decay, no_decay = param_groups(tiny.named_parameters())
    names = {id(p): n for n, p in tiny.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    for name in ("logit_scale", "positional_embedding", "token_embedding.weight", "ln_final.weight"):
        assert name in exempt
    assert not any(n.endswith(".bias") for n in decayed)
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in decayed
    assert decayed | exempt == set(names.values())


def test_everything_frozen_is_a_clear_error(tiny) -> None:
    for p in tiny.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(tiny.named_parameters())


def test_warmup_then_cosine_to_zero() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps=110, warmup_steps=10)
    lrs = []
    for _ in range(110):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5, abs=1e-6)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] < 0.001


def test_temperature_is_clamped_at_100_after_a_step(tiny) -> None:
    module = ClipModule(tiny, InfoNCELoss(), optimizer=torch.optim.AdamW)
    tiny.logit_scale.data.fill_(6.0)
    module.on_train_batch_end(None, None, 0)
    assert tiny.logit_scale.exp().item() == pytest.approx(100.0, rel=1e-5)
