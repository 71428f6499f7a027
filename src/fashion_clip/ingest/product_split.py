"""Train/val/test assignment by product, so no product's images sit on both sides of an evaluation."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path

from fashion_clip.ingest.items import OTHER_SPLIT, CatalogueItem, Entry, Rejected

PRODUCTS_NAME = "products.txt"
HELD_OUT_SPLIT = "test"


def product_fraction(product_id: str) -> float:
    """A stable pseudo-random position in [0, 1) per product: independent of input order and of the run."""
    digest = hashlib.sha256(product_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def held_out(product_id: str, fraction: float) -> bool:
    """Whether a product belongs to the held-out share carved out of its split."""
    return product_fraction(product_id) < fraction


def select_split(entries: Iterable[Entry], fraction: float, take_held_out: bool) -> Iterator[Entry]:
    """The entries on one side of a carve; rejected ones stay on the kept side so each is reported once."""
    for entry in entries:
        side = held_out(entry.product_id, fraction) if isinstance(entry, CatalogueItem) else False
        if side == take_held_out:
            yield entry


def write_products(split_dir: Path, product_ids: Iterable[str]) -> None:
    """List a finished split's products beside its manifest, so later splits can be kept disjoint from it."""
    (split_dir / PRODUCTS_NAME).write_text("".join(f"{p}\n" for p in sorted(set(product_ids))))


def sibling_products(root: Path, exclude: Collection[str]) -> dict[str, str]:
    """Product id -> split for the splits already under `root`, except those this run writes itself."""
    owners: dict[str, str] = {}
    for listing in sorted(root.glob(f"*/{PRODUCTS_NAME}")):
        if listing.parent.name not in exclude:
            owners.update(dict.fromkeys(listing.read_text().splitlines(), listing.parent.name))
    return owners


def outside_siblings(entries: Iterable[Entry], owners: Mapping[str, str]) -> Iterator[Entry]:
    """Reject items whose product another split already holds, which would leak it into evaluation."""
    for entry in entries:
        if isinstance(entry, CatalogueItem) and entry.product_id in owners:
            detail = f"product {entry.product_id} is in split {owners[entry.product_id]!r}"
            entry = Rejected(entry.index, entry.name, OTHER_SPLIT, detail)
        yield entry
