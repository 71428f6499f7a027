"""Embedded splits of random unit features for the retrieval protocols, and their brute-force hits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fashion_clip.retrieval.embedding import CaptionRecord, EmbeddedSplit, ImageRecord


def random_split(
    products: int, dim: int, categories: Sequence[str] = ("c0", "c1", "c2"), seed: int = 0
) -> EmbeddedSplit:
    """2 images and 1-2 captions per product, product p in categories[p % len(categories)]."""
    g = torch.Generator().manual_seed(seed)
    images = [
        ImageRecord(f"k{p}-{i}", f"p{p}", categories[p % len(categories)], f"caption {p}", "shard.tar")
        for p in range(products)
        for i in range(2)
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


def brute_force_hits(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    query_products: list[str],
    gallery_products: list[str],
    k: int,
) -> list[bool]:
    """Per query: is an item of its product among its k best-scoring gallery items (full Python sort)?"""
    hits = []
    for q, product in zip(queries, query_products, strict=True):
        order = sorted(range(len(gallery)), key=lambda j: -float(q @ gallery[j]))
        hits.append(any(gallery_products[j] == product for j in order[:k]))
    return hits
