"""The `full` protocol: every image against every distinct caption of the split, product-level hits."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fashion_clip.evaluation.embedded_split import EmbeddedSplit
from fashion_clip.metrics.retrieval_recall import recall_at_k


def full_protocol(
    split: EmbeddedSplit,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Recall@K both ways over the whole split; a hit is any item of the query's product in the top k.

    Captions are distinct per product (a product's repeated caption is one query, not several), and
    similarities are built `chunk_size` queries at a time on `device`, so memory stays O(chunk x N).
    """
    images = split.image_features.to(device)
    captions = split.caption_features.to(device)
    image_ids, caption_ids = split.image_products.to(device), split.caption_products.to(device)
    i2t = recall_at_k(images, captions, image_ids, caption_ids, ks, chunk_size)
    t2i = recall_at_k(captions, images, caption_ids, image_ids, ks, chunk_size)
    metrics = {f"i2t_r{k}": float(v) for k, v in i2t.items()} | {
        f"t2i_r{k}": float(v) for k, v in t2i.items()
    }
    metrics["mean_recall"] = sum(metrics.values()) / len(metrics)
    return metrics | {
        "images": len(split.images),
        "captions": len(split.captions),
        "products": split.num_products,
    }
