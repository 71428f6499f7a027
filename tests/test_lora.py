"""LoRA via peft: what trains, identity at init, merging back to a plain open_clip model, target errors."""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch
from helpers.tiny_model import TINY, embed, random_tiny
from open_clip.timm_model import TimmModel

from fashion_clip.errors import ConfigError
from fashion_clip.losses import InfoNCELoss
from fashion_clip.models.factory import create_model
from fashion_clip.models.lora import LoraSettings, apply_lora, lora_target_names, merge_lora
from fashion_clip.models.tower_lock import LockSettings

LAYERS = 4
RANK = 4
ALPHA = 8.0


def _settings(**overrides) -> LoraSettings:
    return LoraSettings(**{"enabled": True, "r": RANK, "alpha": ALPHA, **overrides})


@pytest.fixture
def base() -> open_clip.CLIP:
    return random_tiny(0).eval()


def _perturb(model: open_clip.CLIP, match: str = "lora_") -> None:
    """Move the adapters away from B=0 so they change the output."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if match in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


def test_only_adapters_and_temperature_train(base: open_clip.CLIP) -> None:
    model = apply_lora(base, _settings())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert isinstance(model, open_clip.CLIP)
    assert set(trainable) - {n for n in trainable if ".lora_" in n} == {"logit_scale"}
    # per tower and block: attention in_proj + out_proj, mlp.c_fc, mlp.c_proj
    assert sum(".lora_A." in n for n in trainable) == 2 * LAYERS * 4


def test_adapted_model_equals_base_at_init(base: open_clip.CLIP, tiny_inputs) -> None:
    expected = embed(base, tiny_inputs)
    actual = embed(apply_lora(base, _settings()), tiny_inputs)
    for a, e in zip(actual, expected, strict=True):
        assert torch.equal(a, e)


@pytest.mark.parametrize("adapters", [".attn.lora_", ".mlp.c_fc.lora_"])
def test_attention_and_mlp_adapters_both_change_the_output(
    base: open_clip.CLIP, tiny_inputs, adapters: str
) -> None:
    expected = embed(base, tiny_inputs)
    model = apply_lora(copy.deepcopy(base), _settings())
    _perturb(model, adapters)
    image, text = embed(model, tiny_inputs)
    assert not torch.allclose(image, expected[0], atol=1e-3)
    assert not torch.allclose(text, expected[1], atol=1e-3)


def test_merged_model_matches_adapted_model_with_original_keys(base: open_clip.CLIP, tiny_inputs) -> None:
    keys = list(base.state_dict())
    model = apply_lora(base, _settings())
    _perturb(model)
    adapted = embed(model, tiny_inputs)
    merged = merge_lora(model)
    assert type(merged) is type(base)
    assert sorted(merged.state_dict()) == sorted(keys)  # peft re-registers in_proj_weight last
    assert not any("lora" in type(m).__module__ for m in merged.modules())
    for m, a in zip(embed(merged, tiny_inputs), adapted, strict=True):
        torch.testing.assert_close(m, a, atol=1e-5, rtol=1e-5)


def test_merged_weight_is_base_plus_scaled_low_rank_product(base: open_clip.CLIP) -> None:
    name = "visual.transformer.resblocks.1.mlp.c_fc"
    original = base.get_submodule(name).weight.detach().clone()
    model = apply_lora(base, _settings())
    _perturb(model)
    layer = model.get_submodule(name)
    delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * (ALPHA / RANK)
    merged = merge_lora(model).get_submodule(name).weight
    torch.testing.assert_close(merged, original + delta)


def test_a_training_step_moves_only_adapters(base: open_clip.CLIP, tiny_inputs) -> None:
    frozen = {n: p.detach().clone() for n, p in base.named_parameters() if n != "logit_scale"}
    model = apply_lora(base, _settings()).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for _ in range(2):  # the second step sees non-zero B, so A gets gradients too
        optimizer.zero_grad()
        image, text = (
            model.encode_image(tiny_inputs[0], True),
            model.encode_text(tiny_inputs[1], True),
        )
        InfoNCELoss()(image, text, model.logit_scale.exp()).backward()
        optimizer.step()
    lora_grads = {n: p.grad for n, p in model.named_parameters() if ".lora_" in n}
    assert all(g is not None and g.abs().sum() > 0 for g in lora_grads.values())
    merged = merge_lora(model)
    changed = [n for n, p in merged.named_parameters() if n in frozen and not torch.equal(p, frozen[n])]
    # merging changes exactly the adapted weights: attention in/out projections and the MLP
    assert {n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] for n in changed} <= {
        "attn.in_proj_weight",
        "out_proj.weight",
        "c_fc.weight",
        "c_proj.weight",
    }
    assert len(changed) == 2 * LAYERS * 4


def test_one_tower_keeps_the_other_trainable(base: open_clip.CLIP) -> None:
    model = apply_lora(base, _settings(towers=["text"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    visual = {n for n, _ in model.named_parameters() if n.startswith("visual.")}
    assert visual <= trainable
    assert not any(".lora_" in n for n in visual)
    assert {n for n in trainable - visual if ".lora_" not in n} == {"logit_scale"}


def test_lora_respects_lock_on_the_tower_it_does_not_adapt() -> None:
    model, _, _ = create_model(TINY, lock=LockSettings(image=True), lora=_settings(towers=["text"]))
    assert not any(p.requires_grad for p in model.visual.parameters())
    assert any(p.requires_grad for n, p in model.named_parameters() if ".lora_" in n)


def test_open_clip_targets_mean_their_timm_equivalents_in_a_timm_image_tower(tiny_inputs) -> None:
    inputs = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4)), tiny_inputs[1][:2]
    model = random_tiny(0)  # SigLIP2's image tower is a timm ViT like this one, with a MAP head
    model.visual = TimmModel("vit_tiny_patch16_224", 192, pool="map", proj="none")
    names = lora_target_names(model, _settings())
    image = {".".join(n.split(".")[-2:]) for n in names if n.startswith("visual.")}  # blocks and MAP head
    assert image == {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"}
    assert len(names) == len(set(names)) > LAYERS * 3  # the text tower's attn, c_fc and c_proj as before
    adapted = apply_lora(model.eval(), _settings())
    _perturb(adapted)
    expected = embed(adapted, inputs)
    for m, e in zip(embed(merge_lora(adapted), inputs), expected, strict=True):
        torch.testing.assert_close(m, e, atol=1e-5, rtol=1e-5)


def test_merge_lora_without_adapters_is_a_no_op(base: open_clip.CLIP, tiny_inputs) -> None:
    expected = embed(base, tiny_inputs)
    for m, e in zip(embed(merge_lora(base), tiny_inputs), expected, strict=True):
        assert torch.equal(m, e)


def test_unknown_target_names_it_and_lists_real_modules(base: open_clip.CLIP) -> None:
    with pytest.raises(ConfigError, match="'qkv' matches no module") as info:
        apply_lora(base, _settings(targets=["attn", "qkv"]))
    assert "visual.transformer.resblocks.0.mlp.c_fc" in str(info.value)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("attn.out_proj", "part of nn.MultiheadAttention"),
        ("ln_1", "matches a LayerNorm module"),
        ("mlp", "matches a Sequential module"),
    ],
)
def test_targets_whose_adapters_would_not_run_are_config_errors(
    base: open_clip.CLIP, target: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_lora(base, _settings(targets=[target]))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"towers": ["audio"]}, "model.lora.towers"),
        ({"towers": []}, "model.lora.towers"),
        ({"r": 0}, "model.lora.r"),
    ],
)
def test_invalid_settings_name_their_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _settings(**overrides)
