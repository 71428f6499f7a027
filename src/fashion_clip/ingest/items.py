"""What every importer turns its source into: numbered items (or why one was dropped) and their samples.

An item becomes the WebDataset sample the trainer reads (`.jpg`, `.txt`, `.json`): its caption text as
catalogues ship it (bytes in unknown encodings, padding, stray whitespace) cleaned, and its source image
(a file or an array) turned into RGB JPEG bytes, identically on every run.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

FALLBACK_ENCODING = "windows-1252"


def decode_text(raw: bytes | str) -> tuple[str, bool]:
    """UTF-8 when valid, else windows-1252 (Fashion-Gen's legacy bytes); the flag lets callers count those.

    The five bytes windows-1252 leaves undefined fall back to latin-1, so decoding never fails.
    """
    if isinstance(raw, str):
        return raw, False
    raw = raw.rstrip(b"\x00")
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode(FALLBACK_ENCODING), True
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


def clean_caption(text: str) -> str:
    """Collapse whitespace runs: tokenizers ignore them, but they make identical captions compare unequal."""
    return " ".join(text.split())


def clean_captions(texts: Iterable[str]) -> tuple[str, ...]:
    """Distinct non-empty cleaned captions in source order; the first is the one written to `.txt`."""
    return tuple(dict.fromkeys(c for c in (clean_caption(t) for t in texts) if c))


def caption_list(value: object) -> list[str]:
    """Caption strings from a field that may hold one string, a list of them, numbers or null."""
    values = value if isinstance(value, list | tuple) else [value]
    return [v if isinstance(v, str) else str(v) for v in values if v is not None]


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


class InMemoryImage(io.BytesIO):
    """Image file bytes held in memory, shown by size rather than by address in decoder errors, so the
    manifest's skip details are the same on every run."""

    def __repr__(self) -> str:
        return f"<{len(self.getvalue())} bytes of image data>"


def load_image(source: Path | np.ndarray | bytes) -> Image.Image:
    """Fully decoded RGB image, so truncated files fail here and not in a training worker."""
    if isinstance(source, np.ndarray):
        return array_to_image(source)
    with Image.open(InMemoryImage(source) if isinstance(source, bytes) else source) as image:
        image.load()
        return image.convert("RGB")


def fit_within(image: Image.Image, max_side: int | None) -> Image.Image:
    """Shrink (never enlarge) so the longer side is at most `max_side`, keeping the aspect ratio."""
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """Quality 95 (the default) keeps fabric texture while shrinking PNG sources several-fold."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


MISSING_IMAGE = "missing image file"
BAD_IMAGE = "unreadable or truncated image"
EMPTY_CAPTION = "empty caption"
MISSING_KEY = "missing key"
DUPLICATE = "duplicate image name"
BAD_PICKLE = "unreadable pickle"
BAD_RECORD = "malformed record"
OTHER_SPLIT = "product in another split"
UNSAFE_PATH = "image path outside the dataset folder"


@dataclass(frozen=True, eq=False)
class CatalogueItem:
    """One image with its captions; `image` is a file path, a file's bytes or a decoded HxWx3 (or CHW)
    array; `metadata` holds further json fields (colour, season...) the source carries."""

    index: int
    name: str
    image: Path | np.ndarray | bytes
    captions: tuple[str, ...]
    product_id: str
    category: str = ""
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """A source item left out, kept in the stream so positions stay stable and the manifest can say why."""

    index: int
    name: str
    reason: str
    detail: str = ""

    def record(self) -> dict:
        """The manifest's `skipped` entry: reasons are a short fixed vocabulary, details are free text."""
        return {"index": self.index, "item": self.name, "reason": self.reason, "detail": self.detail}


Entry = CatalogueItem | Rejected


def without_duplicates(entries: Iterable[Entry]) -> Iterator[Entry]:
    """Reject repeats of an image name: the same picture twice would be its own hard negative."""
    first: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, CatalogueItem):
            if entry.name in first:
                detail = f"same image as item {first[entry.name]}"
                entry = Rejected(entry.index, entry.name, DUPLICATE, detail)
            else:
                first[entry.name] = entry.index
        yield entry


KEY_DIGITS = 9


def sample_key(index: int) -> str:
    """Key from the item's position in its source, so a sample can be traced back to its record."""
    return f"{index:0{KEY_DIGITS}d}"


def sample_metadata(item: CatalogueItem) -> bytes:
    """The `.json` member: what evaluation groups by (product) and what augmentation samples (captions),
    after the source's own metadata fields."""
    meta = {
        **item.metadata,
        "product_id": item.product_id,
        "category": item.category,
        "captions": list(item.captions),
        "image_name": item.name,
    }
    return json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")


def encode_entry(entry: Entry, max_side: int | None = None, quality: int = JPEG_QUALITY) -> dict | Rejected:
    """Sample dict for an item, or why it cannot be one: a bad image must cost one item, never the run.

    `__product__` is not written (the shard writer skips `__` fields); it tells the caller the product.
    """
    if isinstance(entry, Rejected):
        return entry
    try:
        image = fit_within(load_image(entry.image), max_side)
    except FileNotFoundError as e:
        return Rejected(entry.index, entry.name, MISSING_IMAGE, str(e))
    except Exception as e:  # PIL signals broken files with OSError, SyntaxError, ValueError, EOFError...
        return Rejected(entry.index, entry.name, BAD_IMAGE, f"{type(e).__name__}: {e}")
    return {
        "__key__": sample_key(entry.index),
        "jpg": encode_jpeg(image, quality),
        "txt": entry.captions[0],
        "json": sample_metadata(entry),
        "__product__": entry.product_id,
    }


def encoder(max_side: int | None, quality: int = JPEG_QUALITY) -> partial:
    """A picklable encoding function with the run's resize and quality settings bound, for process pools."""
    return partial(encode_entry, max_side=max_side, quality=quality)
