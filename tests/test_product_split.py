"""Held-out splits are chosen per product, stably, in about the requested share."""

from __future__ import annotations

from pathlib import Path

from fashion_clip.ingest.items import CatalogueItem, Rejected
from fashion_clip.ingest.product_split import held_out, select_split, sibling_products, write_products


def test_assignment_is_stable_and_near_the_fraction() -> None:
    ids = [f"product-{i}" for i in range(4000)]
    share = sum(held_out(p, 0.2) for p in ids) / len(ids)
    assert 0.18 < share < 0.22
    assert [held_out(p, 0.2) for p in ids] == [held_out(p, 0.2) for p in ids]
    assert not any(held_out(p, 0.0) for p in ids)


def test_select_split_partitions_items_and_keeps_rejections_once() -> None:
    items = [CatalogueItem(i, f"{i}.png", Path(f"{i}.png"), ("c",), f"p{i // 3}") for i in range(60)]
    entries = [*items, Rejected(60, "bad", "missing key")]
    kept = list(select_split(entries, 0.3, take_held_out=False))
    carved = list(select_split(entries, 0.3, take_held_out=True))
    assert len(kept) + len(carved) == len(entries)
    assert entries[-1] in kept and entries[-1] not in carved
    products = ({e.product_id for e in side if isinstance(e, CatalogueItem)} for side in (kept, carved))
    assert not set.intersection(*products)


def test_sibling_products_skip_this_runs_own_splits(tmp_path: Path) -> None:
    for split, ids in (("train", ["a", "b"]), ("val", ["c"]), ("test", ["d"])):
        (tmp_path / split).mkdir()
        write_products(tmp_path / split, ids)
    assert sibling_products(tmp_path, exclude={"val", "test"}) == {"a": "train", "b": "train"}
    assert sibling_products(tmp_path, exclude={"train"}) == {"c": "val", "d": "test"}
