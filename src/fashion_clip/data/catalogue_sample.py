"""One catalogue item encoded as the WebDataset sample the trainer reads (`.jpg`, `.txt`, `.json`)."""

from __future__ import annotations

import json
from functools import partial

from fashion_clip.data.catalogue_items import BAD_IMAGE, MISSING_IMAGE, CatalogueItem, Entry, Rejected
from fashion_clip.data.image_encoding import encode_jpeg, fit_within, load_image

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
