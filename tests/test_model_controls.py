"""Grad checkpointing and torch.compile keep eager results; the config keys reach the model."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import open_clip
import pytest
import torch
from helpers.tiny_model import TINY, embed
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fashion_clip.errors import ConfigError
from fashion_clip.losses import InfoNCELoss
from fashion_clip.models.controls import apply_controls
from fashion_clip.models.factory import create_model
from fashion_clip.models.lora import LoraSettings
from fashion_clip.models.tower_lock import LockSettings

BLOCKS = 8  # 4 per tower


def _twins(**controls) -> tuple[open_clip.CLIP, open_clip.CLIP]:
    """A plain model and one built with `controls`, holding the same weights."""
    plain, _, _ = create_model(TINY)
    other, _, _ = create_model(TINY, **controls)
    other.load_state_dict(plain.state_dict())
    return plain, other


def _loss_and_grads(model: open_clip.CLIP, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.train()
    image, text = model.encode_image(batch[0], normalize=True), model.encode_text(batch[1], normalize=True)
    loss = InfoNCELoss()(image, text, model.logit_scale.exp())
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.slow
def test_grad_checkpointing_is_on_and_gives_the_same_loss_and_gradients(tiny_inputs, monkeypatch) -> None:
    plain, checkpointed = _twins(grad_checkpointing=True)
    assert checkpointed.visual.transformer.grad_checkpointing and checkpointed.transformer.grad_checkpointing
    calls = []
    original = open_clip.transformer.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(open_clip.transformer, "checkpoint", counting_checkpoint)
    loss, grads = _loss_and_grads(checkpointed, tiny_inputs)
    assert len(calls) == BLOCKS
    expected_loss, expected_grads = _loss_and_grads(plain, tiny_inputs)
    assert len(calls) == BLOCKS, "the plain model must not checkpoint"
    torch.testing.assert_close(loss, expected_loss)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_compiled_towers_give_eager_embeddings_with_unchanged_keys(tiny_inputs) -> None:
    # aot_eager traces and runs through AOTAutograd in seconds; inductor takes about a minute per tower on CPU
    plain, compiled = _twins(compile=True, compile_backend="aot_eager")
    assert compiled.visual._compiled_call_impl is not None
    assert compiled.transformer._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(plain.state_dict())
    for c, e in zip(embed(compiled.eval(), tiny_inputs), embed(plain.eval(), tiny_inputs), strict=True):
        torch.testing.assert_close(c, e, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"compile": True, "compile_backend": "no-such-backend"}, "model.compile_backend='no-such-backend'"),
        ({"compile": True, "lora": LoraSettings(enabled=True)}, "remove 'attn' from model.lora.targets"),
    ],
)
def test_compile_settings_that_would_fail_at_the_first_batch_fail_at_build(
    controls: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(TINY, **controls)


def test_compile_with_mlp_only_lora_builds() -> None:
    model, _, _ = create_model(
        TINY, compile=True, compile_backend="aot_eager", lora=LoraSettings(enabled=True, targets=["mlp.c_fc"])
    )
    assert model.visual._compiled_call_impl is not None


def _defaults(function: Callable) -> dict:
    return {k: p.default for k, p in inspect.signature(function).parameters.items() if k != "model"}


def _settings_defaults(settings: type) -> dict:
    """A settings dataclass's defaults as the preset spells them (lists, not tuples)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in _defaults(settings).items()}


def test_preset_keys_and_defaults_are_the_functions_defaults(
    compose_train: Callable[..., DictConfig],
) -> None:
    model_cfg = OmegaConf.to_container(compose_train().model)
    controls = _defaults(apply_controls)
    for key, settings in (("lock", LockSettings), ("lora", LoraSettings)):
        node = model_cfg.pop(key)
        assert node.pop("_target_") == f"{settings.__module__}.{settings.__name__}"
        assert _settings_defaults(settings) == node
        assert controls.pop(key) is None
    assert {k: model_cfg[k] for k in controls} == controls


def test_overrides_reach_the_model(compose_train: Callable[..., DictConfig]) -> None:
    cfg = compose_train("model.lock.image=true", "model.lora.enabled=true", "model.lora.towers=[text]")
    model = instantiate(cfg.model).model
    assert not any(p.requires_grad for p in model.visual.parameters())
    assert any(".lora_" in n for n, _ in model.transformer.named_parameters())
