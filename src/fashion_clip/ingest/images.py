"""Source images (files or arrays) to the RGB JPEG bytes stored in shards, identically on every run."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

JPEG_QUALITY = 95
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def _channels_last(array: np.ndarray) -> np.ndarray:
    """HxWx3 view of an image array that may be stored CHW, as preprocessing pipelines often do."""
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"expected an HxWx3 or 3xHxW image array, got shape {array.shape}")
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def array_to_image(array: np.ndarray) -> Image.Image:
    """uint8 arrays as they are; float arrays in [0, 1] scaled; other floats taken as CLIP-normalised."""
    array = _channels_last(np.asarray(array))
    if array.dtype != np.uint8:
        values = array.astype(np.float32)
        if values.min() < 0.0 or values.max() > 1.0:
            values = values * CLIP_STD + CLIP_MEAN
        array = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def load_image(source: Path | np.ndarray) -> Image.Image:
    """Fully decoded RGB image, so truncated files fail here and not in a training worker."""
    if isinstance(source, np.ndarray):
        return array_to_image(source)
    with Image.open(source) as image:
        image.load()
        return image.convert("RGB")


def fit_within(image: Image.Image, max_side: int | None) -> Image.Image:
    """Shrink (never enlarge) so the longer side is at most `max_side`, keeping the aspect ratio."""
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def encode_jpeg(image: Image.Image) -> bytes:
    """Quality 95 keeps fabric texture while shrinking PNG sources several-fold."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
