"""Top-k products for a query: image hits grouped by product, a product scored by its best image."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.embedded_split import ImageRecord
from fashion_clip.retrieval.image_search import ImageSearcher, TorchSearcher
from fashion_clip.retrieval.index_file import IndexData


@dataclass(frozen=True)
class ProductHit:
    """One result: a product, its best-matching image (index row and metadata) and that image's score."""

    rank: int
    score: float
    row: int
    record: ImageRecord


def first_per_product(
    records: list[ImageRecord], scores: torch.Tensor, rows: torch.Tensor, k: int
) -> list[ProductHit]:
    """Walk image hits best first and keep each product's first (hence best) image, up to k products."""
    hits: list[ProductHit] = []
    seen: set[str] = set()
    for score, row in zip(scores.tolist(), rows.tolist(), strict=True):
        record = records[row]
        if record.product_id in seen:
            continue
        seen.add(record.product_id)
        hits.append(ProductHit(len(hits) + 1, score, row, record))
        if len(hits) == k:
            break
    return hits


def search(
    index: IndexData, query_features: torch.Tensor, k: int, searcher: ImageSearcher | None = None
) -> list[ProductHit]:
    """Exact top-k products (fewer when the index has fewer) for one unit-norm query embedding.

    The best k x (most images of any product) images always contain k distinct products, and each
    product's best image comes before any image of a product outside them, so grouping them is exact.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    query = query_features.reshape(-1)
    if query.shape[0] != index.embeddings.shape[1]:
        raise ConfigError(
            f"query embedding has {query.shape[0]} dimensions, the index {index.embeddings.shape[1]}: "
            f"use the model the index was built with"
        )
    searcher = searcher or TorchSearcher(index.embeddings)
    scores, rows = searcher.top_images(query, min(len(index), k * index.max_images_per_product))
    return first_per_product(index.records, scores, rows, k)
