"""The full protocol against a brute-force ranking, with distinct captions per product."""

from __future__ import annotations

import torch
from helpers.embedded_splits import brute_force_hits, random_split

from fashion_clip.evaluation.full import full_protocol
from fashion_clip.retrieval.embedding import CaptionRecord, distinct_captions


def brute_force_recall(queries, gallery, query_products, gallery_products, k) -> float:
    """Share of queries whose product is among their k best-scoring gallery items."""
    hits = brute_force_hits(queries, gallery, query_products, gallery_products, k)
    return sum(hits) / len(hits)


def test_full_protocol_matches_brute_force() -> None:
    split = random_split(products=30, dim=16)
    metrics = full_protocol(split, ks=(1, 5, 10), chunk_size=7)
    image_products = [r.product_id for r in split.images]
    caption_products = [r.product_id for r in split.captions]
    for k in (1, 5, 10):
        expected_i2t = brute_force_recall(
            split.image_features, split.caption_features, image_products, caption_products, k
        )
        expected_t2i = brute_force_recall(
            split.caption_features, split.image_features, caption_products, image_products, k
        )
        assert abs(metrics[f"i2t_r{k}"] - expected_i2t) < 1e-6
        assert abs(metrics[f"t2i_r{k}"] - expected_t2i) < 1e-6
    recalls = [metrics[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)]
    assert abs(metrics["mean_recall"] - sum(recalls) / 6) < 1e-9
    assert (metrics["images"], metrics["captions"], metrics["products"]) == (60, 45, 30)


def test_perfect_features_give_full_recall() -> None:
    split = random_split(products=30, dim=16)
    by_product = {r.product_id: split.caption_features[i] for i, r in enumerate(split.captions)}
    split.image_features = torch.stack([by_product[r.product_id] for r in split.images])
    split.caption_features = torch.stack([by_product[r.product_id] for r in split.captions])
    assert full_protocol(split)["i2t_r1"] == 1.0


def test_captions_are_distinct_per_product_in_first_seen_order() -> None:
    captions = distinct_captions([("a", ["red", "red", "blue"]), ("b", ["red"]), ("a", ["blue", "green"])])
    assert captions == [
        CaptionRecord("a", "red"),
        CaptionRecord("a", "blue"),
        CaptionRecord("b", "red"),
        CaptionRecord("a", "green"),
    ]
