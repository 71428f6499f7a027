"""Tower locks: which parameters train for each `model.lock` setting, and the errors for bad settings."""

from __future__ import annotations

import open_clip
import pytest

from fashion_clip.errors import ConfigError
from fashion_clip.models.factory import create_model
from fashion_clip.models.lora import LoraSettings
from fashion_clip.models.tower_lock import LockSettings, image_lock_groups, text_lock_groups

TINY = "FashionCLIP-Tiny"
LAYERS = 4  # FashionCLIP-Tiny has 4 blocks per tower
# tower -> (name prefix, stem parameters, final norm, projection) in open_clip's CLIP
TOWER_PARTS = {
    "image": (
        "visual.",
        ("visual.conv1", "visual.class_embedding", "visual.positional", "visual.ln_pre"),
        "visual.ln_post.",
        "visual.proj",
    ),
    "text": ("", ("token_embedding.", "positional_embedding"), "ln_final.", "text_projection"),
}


def _trainable(model: open_clip.CLIP) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _top_groups(names: set[str], tower: str, unlocked: int) -> set[str]:
    """Reference for open_clip's lock groups: [stem], blocks 0..L-2, [block L-1, final norm], [projection]."""
    prefix, stem, final_norm, proj = TOWER_PARTS[tower]
    blocks = f"{prefix}transformer.resblocks."
    groups = [
        {n for n in names if n.startswith(stem)},
        *({n for n in names if n.startswith(f"{blocks}{i}.")} for i in range(LAYERS - 1)),
        {n for n in names if n.startswith((f"{blocks}{LAYERS - 1}.", final_norm))},
        {proj},
    ]
    return set().union(*groups[len(groups) - unlocked :])


def test_group_counts_match_open_clip_layout() -> None:
    model, _, _ = create_model(TINY)
    assert image_lock_groups(model.visual) == LAYERS + 2
    assert text_lock_groups(model) == LAYERS + 2


def test_no_lock_trains_everything() -> None:
    model, _, _ = create_model(TINY)
    assert _trainable(model) == {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize("unlocked", [0, 1, 2, LAYERS + 1, LAYERS + 2])
def test_lock_image_leaves_top_groups_trainable(unlocked: int) -> None:
    model, _, _ = create_model(TINY, lock=LockSettings(image=True, image_unlocked_groups=unlocked))
    names = {n for n, _ in model.named_parameters()}
    text_and_shared = {n for n in names if not n.startswith("visual.")}
    assert _trainable(model) == text_and_shared | _top_groups(names, "image", unlocked)


def test_one_unlocked_image_group_is_the_projection_and_two_add_the_last_block() -> None:
    one, _, _ = create_model(TINY, lock=LockSettings(image=True, image_unlocked_groups=1))
    two, _, _ = create_model(TINY, lock=LockSettings(image=True, image_unlocked_groups=2))
    visual_one = {n for n in _trainable(one) if n.startswith("visual.")}
    visual_two = {n for n in _trainable(two) if n.startswith("visual.")}
    assert visual_one == {"visual.proj"}
    assert "visual.transformer.resblocks.3.mlp.c_fc.weight" in visual_two
    assert "visual.ln_post.weight" in visual_two
    assert not any(n.startswith("visual.transformer.resblocks.2.") for n in visual_two)


@pytest.mark.parametrize("unlocked", [1, 2, LAYERS + 2])
def test_lock_text_leaves_top_layers_trainable(unlocked: int) -> None:
    model, _, _ = create_model(TINY, lock=LockSettings(text=True, text_unlocked_layers=unlocked))
    names = {n for n, _ in model.named_parameters()}
    image_and_shared = {n for n in names if n.startswith(("visual.", "logit_"))}
    assert _trainable(model) == image_and_shared | _top_groups(names, "text", unlocked)


def test_both_towers_locked_with_some_unlocked_layers_builds() -> None:
    model, _, _ = create_model(TINY, lock=LockSettings(image=True, text=True, text_unlocked_layers=1))
    assert _trainable(model) == {"text_projection", "logit_scale"}


def test_everything_locked_is_a_config_error_naming_the_keys() -> None:
    with pytest.raises(ConfigError, match="only logit_scale/logit_bias would train") as info:
        create_model(TINY, lock=LockSettings(image=True, text=True))
    for key in ("model.lock.image_unlocked_groups", "model.lock.text_unlocked_layers", "model.lora.enabled"):
        assert key in str(info.value)


def test_everything_locked_but_lora_builds() -> None:
    both = LockSettings(image=True, text=True)
    model, _, _ = create_model(TINY, lock=both, lora=LoraSettings(enabled=True, r=2))
    assert any("lora_" in n for n in _trainable(model))


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"image": True, "image_unlocked_groups": LAYERS + 3}, "model.lock.image_unlocked_groups=7"),
        ({"image": True, "image_unlocked_groups": -1}, "model.lock.image_unlocked_groups=-1"),
        ({"text": True, "text_unlocked_layers": LAYERS + 3}, "model.lock.text_unlocked_layers=7"),
    ],
)
def test_unlocked_count_beyond_the_tower_names_key_and_size(settings: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        create_model(TINY, lock=LockSettings(**settings))
    assert f"has {LAYERS + 2} groups" in str(info.value)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"image_unlocked_groups": 1}, "model.lock.image=true"),
        ({"text_unlocked_layers": 1}, "model.lock.text=true"),
    ],
)
def test_unlocked_count_without_its_switch_fails_before_a_model_is_built(settings: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        LockSettings(**settings)


def test_unfrozen_layer_norm_of_an_open_clip_text_tower_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.lock.text_freeze_layer_norm=false"):
        create_model(TINY, lock=LockSettings(text=True, text_freeze_layer_norm=False))
