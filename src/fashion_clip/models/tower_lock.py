"""Which tower a parameter belongs to, for open_clip's two model layouts (CLIP and CustomTextCLIP), and
locking the towers (model.lock): freeze a tower, or all of it but its last groups or layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import open_clip
from open_clip.timm_model import TimmModel
from open_clip.transformer import VisionTransformer
from timm.models import group_parameters
from torch import nn

from fashion_clip.errors import ConfigError

Tower = Literal["image", "text"]
TOWERS: tuple[Tower, ...] = ("image", "text")
SHARED = ("logit_scale", "logit_bias")


def tower_of(name: str) -> Tower | None:
    """'image' or 'text' for a parameter or module name; None for the shared temperature and bias."""
    top = name.split(".", 1)[0]
    if top in SHARED:
        return None
    return "image" if top == "visual" else "text"


def text_tower(model: nn.Module) -> nn.Module:
    """The module holding the text tower's parts: `model.text`, or the CLIP itself, which unpacks them."""
    return getattr(model, "text", model)


def _check_unused(key: str, value: int, switch: str, locked: bool) -> None:
    """An unlocked count without its lock switch would be silently ignored."""
    if value and not locked:
        raise ConfigError(
            f"model.lock.{key}={value} only takes effect with model.lock.{switch}=true; set both, or "
            f"model.lock.{key}=0."
        )


@dataclass(frozen=True)
class LockSettings:
    """`model.lock`: which towers freeze and how many of their top groups stay trainable."""

    image: bool = False
    image_unlocked_groups: int = 0
    image_freeze_bn_stats: bool = False
    text: bool = False
    text_unlocked_layers: int = 0
    text_freeze_layer_norm: bool = True

    def __post_init__(self) -> None:
        _check_unused("image_unlocked_groups", self.image_unlocked_groups, "image", self.image)
        _check_unused("text_unlocked_layers", self.text_unlocked_layers, "text", self.text)


def image_lock_groups(visual: nn.Module) -> int:
    """How many groups `lock_image_tower` can leave trainable, counted from the top; 0 if none can be."""
    if isinstance(visual, VisionTransformer):
        # stem, each block but the last, (last block + ln_post), proj
        return len(visual.transformer.resblocks) + 2
    if isinstance(visual, TimmModel):
        return max(group_parameters(visual.trunk, visual.trunk.group_matcher())) + 1
    return 0


def text_lock_groups(model: nn.Module) -> int:
    """How many layers `lock_text_tower` can leave trainable, counted from the top; 0 if none can be."""
    text = text_tower(model)
    blocks = getattr(getattr(text, "transformer", None), "resblocks", None)
    if blocks is None:
        return 0
    # embeddings, each block but the last, (last block + ln_final), projection when there is one
    return len(blocks) + 1 + (getattr(text, "text_projection", None) is not None)


def _check_unlocked(key: str, value: int, available: int, tower: str) -> None:
    """A count outside 0..available would be silently clamped or wrap around inside open_clip."""
    if not 0 <= value <= available:
        raise ConfigError(
            f"model.lock.{key}={value}, but this model's {tower} tower has {available} groups that can be "
            f"left trainable; set model.lock.{key} between 0 and {available}."
        )


def lock_towers(model: open_clip.CLIP, lock: LockSettings) -> None:
    """Set requires_grad=False on the locked towers except their top unlocked groups/layers."""
    if lock.image:
        groups = image_lock_groups(model.visual)
        _check_unlocked("image_unlocked_groups", lock.image_unlocked_groups, groups, "image")
        model.lock_image_tower(lock.image_unlocked_groups, lock.image_freeze_bn_stats)
    if not lock.text:
        return
    text = text_tower(model)
    _check_unlocked("text_unlocked_layers", lock.text_unlocked_layers, text_lock_groups(model), "text")
    if not lock.text_freeze_layer_norm and not isinstance(text, open_clip.hf_model.HFTextEncoder):
        raise ConfigError(
            "model.lock.text_freeze_layer_norm=false is only supported for Hugging Face text towers, "
            "not open_clip's own text transformer: set it to true."
        )
    model.lock_text_tower(lock.text_unlocked_layers, lock.text_freeze_layer_norm)


def require_trainable(model: nn.Module) -> None:
    """Fail at build time if only the temperature/bias would train: a run that cannot learn anything."""
    if any(p.requires_grad and tower_of(n) is not None for n, p in model.named_parameters()):
        return
    raise ConfigError(
        "every tower parameter is frozen, so only logit_scale/logit_bias would train: set "
        "model.lock.image_unlocked_groups or model.lock.text_unlocked_layers above 0, set "
        "model.lock.image=false or model.lock.text=false, or add adapters with model.lora.enabled=true."
    )
