"""The full protocol against a brute-force ranking, with distinct captions per product."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fashion_clip.evaluation.embedded_split import CaptionRecord, EmbeddedSplit, ImageRecord
from fashion_clip.evaluation.embedding import distinct_captions
from fashion_clip.evaluation.full_protocol import full_protocol


def random_split(
    products: int = 30, images_per_product: int = 2, dim: int = 16, seed: int = 0
) -> EmbeddedSplit:
    """Random unit features: 2 images and 1-2 captions per product."""
    g = torch.Generator().manual_seed(seed)
    images = [
        ImageRecord(f"k{p}-{i}", f"p{p}", f"c{p % 3}", f"caption {p}", "shard.tar")
        for p in range(products)
        for i in range(images_per_product)
    ]
    captions = [
        CaptionRecord(f"p{p}", f"caption {p} v{j}") for p in range(products) for j in range(1 + p % 2)
    ]
    return EmbeddedSplit(
        F.normalize(torch.randn(len(images), dim, generator=g), dim=-1),
        images,
        F.normalize(torch.randn(len(captions), dim, generator=g), dim=-1),
        captions,
    )


def brute_force_recall(queries, gallery, query_products, gallery_products, k) -> float:
    """Python loop: sort every row fully and look for the query's product in the first k."""
    hits = 0
    for q, product in zip(queries, query_products, strict=True):
        order = sorted(range(len(gallery)), key=lambda j: -float(q @ gallery[j]))
        hits += any(gallery_products[j] == product for j in order[:k])
    return hits / len(queries)


def test_full_protocol_matches_brute_force() -> None:
    split = random_split()
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
    split = random_split()
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
