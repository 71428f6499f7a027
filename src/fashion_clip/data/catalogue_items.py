"""What every importer turns its source into: numbered items to encode, or the reason an item was dropped."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
