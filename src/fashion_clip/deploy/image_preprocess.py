"""The model's eval image transform in PIL + numpy, so embeddings match outside Python's torch stack.

It follows open_clip's `image_transform(is_train=False)` step by step (resize, crop or pad, colour mode,
scale to [0, 1], normalise), with torchvision's size arithmetic, so the pixels equal the torch transform's.
The README shows the same steps as a snippet to copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}  # the eval modes open_clip has
RESIZE_MODES = ("shortest", "longest", "squash")


def keep_ratio_size(width: int, height: int, target: tuple[int, int], longest: bool) -> tuple[int, int]:
    """(width, height) scaled by one ratio so the shortest (or longest) side meets the target (timm)."""
    ratio_h, ratio_w = height / target[0], width / target[1]
    ratio = max(ratio_h, ratio_w) if longest else min(ratio_h, ratio_w)
    return round(width / ratio), round(height / ratio)


def shortest_side_size(width: int, height: int, side: int) -> tuple[int, int]:
    """torchvision `Resize(int)`: the short side becomes `side`, the long one is truncated, not rounded."""
    if width <= height:
        return side, int(side * height / width)
    return int(side * width / height), side


def center_crop_or_pad(image: Image.Image, height: int, width: int, fill: int) -> Image.Image:
    """Pad with `fill` where the image is smaller, then crop the centre (torchvision's rounding)."""
    if width > image.width or height > image.height:
        left = (width - image.width) // 2 if width > image.width else 0
        top = (height - image.height) // 2 if height > image.height else 0
        size = (max(width, image.width), max(height, image.height))
        canvas = Image.new(image.mode, size, (fill,) * len(image.getbands()))  # one int would pack RGB
        canvas.paste(image, (left, top))
        image = canvas
    top = int(round((image.height - height) / 2.0))
    left = int(round((image.width - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


def resized(image: Image.Image, spec: dict[str, Any]) -> Image.Image:
    """Resize and crop (or pad) to the spec's size the way its `resize_mode` does in open_clip."""
    height, width = spec["size"]
    interpolation = INTERPOLATIONS[spec["interpolation"]]
    mode = spec["resize_mode"]
    if mode == "squash":
        return image.resize((width, height), interpolation)
    if mode == "longest":
        scaled = image.resize(
            keep_ratio_size(image.width, image.height, (height, width), True), interpolation
        )
        return center_crop_or_pad(scaled, height, width, spec["fill_color"])
    if height == width:
        scaled = image.resize(shortest_side_size(image.width, image.height, height), interpolation)
    else:  # open_clip resizes a non-square target with timm's ResizeKeepRatio, always bicubic
        scaled = image.resize(
            keep_ratio_size(image.width, image.height, (height, width), False), Image.BICUBIC
        )
    return center_crop_or_pad(scaled, height, width, 0)


def preprocess(image: Image.Image, spec: dict[str, Any]) -> np.ndarray:
    """One image as the float32 CHW array the image encoder takes (`preprocess.json` is the spec)."""
    pixels = np.asarray(resized(image, spec).convert(spec["mode"]), dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1)
