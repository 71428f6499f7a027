"""What every importer turns its source into: numbered items (or why one was dropped) and their samples.

An item becomes the WebDataset sample the trainer reads (`.jpg`, `.txt`, `.json`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from fashion_clip.ingest.images import encode_jpeg, fit_within, load_image

MISSING_IMAGE = "missing image file"
BAD_IMAGE = "unreadable or truncated image"
EMPTY_CAPTION = "empty caption"
MISSING_KEY = "missing key"
DUPLICATE = "duplicate image name"
BAD_PICKLE = "unreadable pickle"
BAD_RECORD = "malformed record"
OTHER_SPLIT = "product in another split"


@dataclass(frozen=True, eq=False)
class CatalogueItem:
    """One image with its captions; `image` is a file path or a decoded HxWx3 (or CHW) array."""

    index: int
    name: str
    image: Path | np.ndarray
    captions: tuple[str, ...]
    product_id: str
    category: str = ""


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
    """The `.json` member: what evaluation groups by (product) and what augmentation samples (captions)."""
    meta = {
        "product_id": item.product_id,
        "category": item.category,
        "captions": list(item.captions),
        "image_name": item.name,
    }
    return json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")


def encode_entry(entry: Entry, max_side: int | None = None) -> dict | Rejected:
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
        "jpg": encode_jpeg(image),
        "txt": entry.captions[0],
        "json": sample_metadata(entry),
        "__product__": entry.product_id,
    }


def encoder(max_side: int | None) -> partial:
    """A picklable encoding function with the run's resize setting bound, for process pools."""
    return partial(encode_entry, max_side=max_side)
