"""Which tower a parameter belongs to, for open_clip's two model layouts (CLIP and CustomTextCLIP)."""

from __future__ import annotations

from typing import Literal

from torch import nn

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
