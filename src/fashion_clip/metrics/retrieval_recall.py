"""Recall@K for image<->text retrieval with product-level positives, gathered across DDP ranks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

DIRECTIONS = ("i2t", "t2i")


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Fail early on a bad `ks` so a typo in a config never surfaces as an empty metric dict."""
    if len(ks) == 0 or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks!r}")
    return tuple(sorted(set(ks)))


def _check_chunk_size(chunk_size: int) -> int:
    """Fail early on a chunk size that would build no similarity rows at all."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return chunk_size


def _check_inputs(
    queries: torch.Tensor, gallery: torch.Tensor, query_ids: torch.Tensor, gallery_ids: torch.Tensor
) -> None:
    """Reject mismatched shapes here, where the message can say which argument is wrong."""
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries and gallery must be 2-D with the same feature size, got "
            f"{tuple(queries.shape)} and {tuple(gallery.shape)}"
        )
    if query_ids.shape != (queries.shape[0],) or gallery_ids.shape != (gallery.shape[0],):
        raise ValueError(
            f"ids must be 1-D with one entry per row: queries {queries.shape[0]} vs query_ids "
            f"{tuple(query_ids.shape)}, gallery {gallery.shape[0]} vs gallery_ids {tuple(gallery_ids.shape)}"
        )
    if queries.shape[0] == 0 or gallery.shape[0] == 0:
        raise ValueError("recall_at_k needs at least one query and one gallery item")


def _chunk_hits(
    query_chunk: torch.Tensor,
    gallery: torch.Tensor,
    chunk_ids: torch.Tensor,
    gallery_ids: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """Same-product flags for each query's top `k` only, so the chunk's full similarity row is freed."""
    top = (query_chunk @ gallery.T).topk(k, dim=1).indices
    return gallery_ids[top] == chunk_ids[:, None]


def query_hits(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    query_ids: torch.Tensor,
    gallery_ids: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[int, torch.Tensor]:
    """Per query, whether a same-product item is in its top k: the rows recall averages, kept apart so
    they can also be averaged per category.

    Inputs are L2-normalised here (in float32, on the inputs' device), so ranking is by cosine
    similarity whatever the caller passes; similarities are built `chunk_size` query rows at a time,
    so memory is O(chunk_size x N) rather than O(N^2). A k larger than the gallery counts the whole
    gallery.
    """
    ks, chunk_size = _check_ks(ks), _check_chunk_size(chunk_size)
    _check_inputs(queries, gallery, query_ids, gallery_ids)
    device = queries.device
    queries = F.normalize(queries.float(), dim=-1)
    gallery = F.normalize(gallery.to(device).float(), dim=-1)
    query_ids, gallery_ids = query_ids.to(device), gallery_ids.to(device)
    depth = min(max(ks), gallery.shape[0])
    chunks = []
    for start in range(0, queries.shape[0], chunk_size):
        stop = start + chunk_size
        hits = _chunk_hits(queries[start:stop], gallery, query_ids[start:stop], gallery_ids, depth)
        chunks.append(torch.stack([hits[:, :k].any(dim=1) for k in ks], dim=1))
    rows = torch.cat(chunks)
    return {k: rows[:, i] for i, k in enumerate(ks)}


def recall_at_k(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    query_ids: torch.Tensor,
    gallery_ids: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[int, torch.Tensor]:
    """Fraction of queries with a same-product item in their top k, since one caption fits many images
    (`query_hits` averaged over the queries)."""
    hits = query_hits(queries, gallery, query_ids, gallery_ids, ks, chunk_size)
    return {k: rows.float().mean() for k, rows in hits.items()}


class RetrievalRecall(Metric):
    """Image<->text Recall@K over the whole validation split, since per-batch recall depends on batch size."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    image_features: list[torch.Tensor]
    text_features: list[torch.Tensor]
    product_ids: list[torch.Tensor]

    def __init__(self, ks: Sequence[int] = (1, 5, 10), chunk_size: int = 1024, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ks, self.chunk_size = _check_ks(ks), _check_chunk_size(chunk_size)
        self.add_state("image_features", default=[], dist_reduce_fx="cat")
        self.add_state("text_features", default=[], dist_reduce_fx="cat")
        self.add_state("product_ids", default=[], dist_reduce_fx="cat")

    def update(
        self, image_features: torch.Tensor, text_features: torch.Tensor, product_ids: torch.Tensor
    ) -> None:
        """Store detached float32 rows so every rank gathers one dtype whatever the autocast precision."""
        sizes = (image_features.shape[0], text_features.shape[0], product_ids.shape[0])
        if len(set(sizes)) != 1:
            raise ValueError(
                f"RetrievalRecall.update needs one row per sample in each input, got "
                f"image_features={sizes[0]}, text_features={sizes[1]}, product_ids={sizes[2]}"
            )
        self.image_features.append(image_features.detach().float())
        self.text_features.append(text_features.detach().float())
        self.product_ids.append(product_ids.detach().long())

    def compute(self) -> dict[str, torch.Tensor]:
        """Rank over the gathered split with product-level positives in both directions."""
        if len(self.product_ids) == 0 or dim_zero_cat(self.product_ids).numel() == 0:
            raise ValueError(
                "RetrievalRecall.compute() has no samples: the validation split is empty; "
                "check the validation shard spec (its path/brace pattern and manifest) in the data config"
            )
        images = dim_zero_cat(self.image_features)
        texts = dim_zero_cat(self.text_features)
        ids = dim_zero_cat(self.product_ids)
        pairs = {"i2t": (images, texts), "t2i": (texts, images)}
        results = {
            f"{direction}_r{k}": value
            for direction in DIRECTIONS
            for k, value in recall_at_k(*pairs[direction], ids, ids, self.ks, self.chunk_size).items()
        }
        results["mean_recall"] = torch.stack(list(results.values())).mean()
        return results
