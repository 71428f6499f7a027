"""The `full` protocol: every image against every distinct caption of the split, product-level hits, with
the same recalls per query category beside the totals (`by_category/<category>/<metric>` keys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fashion_clip.metrics.retrieval_recall import query_hits
from fashion_clip.records import Breakdown, flatten
from fashion_clip.retrieval.embedding import EmbeddedSplit, product_categories


def group_means(
    categories: Sequence[str | None], columns: Mapping[str, torch.Tensor], count_name: str
) -> Breakdown:
    """Mean of each per-query column within each category, with the category's query count as
    `count_name`; queries without a category are left out."""
    groups: dict[str, list[int]] = {}
    for row, category in enumerate(categories):
        if category:
            groups.setdefault(category, []).append(row)
    breakdown: Breakdown = {}
    for category in sorted(groups):
        rows = torch.tensor(groups[category])
        values = {name: float(column[rows].double().mean()) for name, column in columns.items()}
        breakdown[category] = {count_name: float(len(rows))} | values
    return breakdown


Hits = Mapping[int, torch.Tensor]


def category_recall(split: EmbeddedSplit, i2t: Hits, t2i: Hits) -> dict[str, float]:
    """Recall per query category (an image's own; a caption's product's), so a team sees which
    categories fail; each category's `mean_recall` averages its recalls of both directions."""
    caption_categories = product_categories(split.images)
    images = group_means(
        [r.category for r in split.images], {f"i2t_r{k}": v for k, v in i2t.items()}, "images"
    )
    captions = group_means(
        [caption_categories.get(c.product_id) for c in split.captions],
        {f"t2i_r{k}": v for k, v in t2i.items()},
        "captions",
    )
    breakdown = {}
    for category in sorted(set(images) | set(captions)):
        values = images.get(category, {}) | captions.get(category, {})
        recalls = [v for name, v in values.items() if name.startswith(("i2t_", "t2i_"))]
        breakdown[category] = values | {"mean_recall": sum(recalls) / len(recalls)}
    return flatten(breakdown)


def full_protocol(
    split: EmbeddedSplit,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    by_category: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Recall@K both ways over the whole split; a hit is any item of the query's product in the top k.

    Captions are distinct per product (a product's repeated caption is one query, not several), and
    similarities are built `chunk_size` queries at a time on `device`, so memory stays O(chunk x N).
    With `by_category`, the same recalls per query category are added as `by_category/<c>/<metric>`.
    """
    images = split.image_features.to(device)
    captions = split.caption_features.to(device)
    image_ids, caption_ids = split.image_products.to(device), split.caption_products.to(device)
    i2t = query_hits(images, captions, image_ids, caption_ids, ks, chunk_size)
    t2i = query_hits(captions, images, caption_ids, image_ids, ks, chunk_size)
    metrics = {f"i2t_r{k}": float(v.float().mean()) for k, v in i2t.items()} | {
        f"t2i_r{k}": float(v.float().mean()) for k, v in t2i.items()
    }
    metrics["mean_recall"] = sum(metrics.values()) / len(metrics)
    counts = {"images": len(split.images), "captions": len(split.captions), "products": split.num_products}
    breakdown = category_recall(split, i2t, t2i) if by_category else {}
    return metrics | counts | breakdown
