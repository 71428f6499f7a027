"""The FashionBERT "sample 100" protocol of Fashion-Gen papers: rank each query's positive among 1 + 100.

Each sampled product gives one text->image query (one of its captions against one of its images and
one image of each of `num_negatives` other products) and one image->text query (the mirror image).
Negative products come from the query's own category first, as FashionSAP evaluates, since
same-category negatives are the hard ones; a category with too few products is filled from the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from fashion_clip.errors import ConfigError
from fashion_clip.retrieval.embedding import CaptionRecord, EmbeddedSplit, ImageRecord

UNKNOWN = -1


@dataclass(frozen=True)
class ProductRows:
    """One feature matrix's rows grouped by product, so one row of each of many products is drawn at once."""

    order: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    @classmethod
    def group(cls, row_products: np.ndarray, num_products: int) -> ProductRows:
        """Group rows by their product index; rows of products outside the pool (index -1) are dropped."""
        kept = np.flatnonzero(row_products >= 0)
        order = kept[np.argsort(row_products[kept], kind="stable")]
        counts = np.bincount(row_products[kept], minlength=num_products)
        return cls(order, np.cumsum(counts) - counts, counts)

    def pick(self, products: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn row of each product, in the shape of `products`."""
        return self.order[self.starts[products] + rng.integers(self.counts[products])]


@dataclass(frozen=True)
class ProductPool:
    """Products that have both an image and a caption, the only ones that can be queries or candidates."""

    ids: list[str]
    categories: np.ndarray
    images: ProductRows
    captions: ProductRows


def product_pool(split: EmbeddedSplit) -> ProductPool:
    """Index the split's products in first-seen image order, with each one's first non-empty category."""
    captioned = {c.product_id for c in split.captions}
    categories: dict[str, str | None] = {}
    for record in split.images:
        if record.product_id in captioned and not categories.get(record.product_id):
            categories[record.product_id] = record.category or None
    ids = list(categories)
    index = {product_id: i for i, product_id in enumerate(ids)}
    codes = {name: i for i, name in enumerate(sorted({c for c in categories.values() if c}))}

    def rows(records: Sequence[ImageRecord | CaptionRecord]) -> ProductRows:
        """Group one matrix's rows by pool product; products outside the pool are dropped."""
        return ProductRows.group(
            np.array([index.get(r.product_id, -1) for r in records], dtype=np.int64), len(ids)
        )

    return ProductPool(
        ids,
        np.array([codes.get(c, UNKNOWN) for c in categories.values()]),
        rows(split.images),
        rows(split.captions),
    )


def negative_products(
    categories: np.ndarray, queries: np.ndarray, num_negatives: int, rng: np.random.Generator
) -> np.ndarray:
    """(Q, n) distinct other products per query: from its own category first, then uniformly from the rest.

    A product with an unknown category (-1) has no category of its own: its negatives all come from
    the rest, and it only ever fills other queries' lists.
    """
    products = np.arange(len(categories))
    negatives = np.empty((len(queries), num_negatives), dtype=np.int64)
    for row, query in enumerate(queries):
        same_category = (categories == categories[query]) & (categories[query] != UNKNOWN)
        others = products != query
        same = np.flatnonzero(same_category & others)
        if len(same) >= num_negatives:
            negatives[row] = rng.choice(same, num_negatives, replace=False)
            continue
        rest = np.flatnonzero(~same_category & others)
        negatives[row] = np.concatenate([same, rng.choice(rest, num_negatives - len(same), replace=False)])
    return negatives


@dataclass(frozen=True)
class Candidates:
    """Rows of the query features and, per query, rows of the gallery features; column 0 is the positive."""

    queries: torch.Tensor
    gallery: torch.Tensor


def sample_candidates(
    split: EmbeddedSplit, num_queries: int = 1000, num_negatives: int = 100, seed: int = 0
) -> dict[str, Candidates]:
    """The `i2t` and `t2i` queries and candidates, drawn from `seed` alone so a run can be repeated exactly.

    Both directions share the sampled products and their negative products; which image or caption
    stands for each product is drawn separately for every slot.
    """
    pool = product_pool(split)
    if num_queries < 1:
        raise ConfigError(f"sample100.num_queries must be at least 1, got {num_queries}")
    if num_negatives < 0:
        raise ConfigError(f"sample100.num_negatives must be at least 0, got {num_negatives}")
    if len(pool.ids) < num_negatives + 1:
        raise ConfigError(
            f"sample100.num_negatives={num_negatives} needs at least {num_negatives + 1} products with an "
            f"image and a caption, but the split has {len(pool.ids)}; lower sample100.num_negatives "
            f"or evaluate a larger split"
        )
    rng = np.random.default_rng(seed)
    queries = rng.choice(len(pool.ids), min(num_queries, len(pool.ids)), replace=False)
    negatives = negative_products(pool.categories, queries, num_negatives, rng)
    products = np.concatenate([queries[:, None], negatives], axis=1)

    def draw(query_rows: ProductRows, gallery_rows: ProductRows) -> Candidates:
        """One direction: a query row per sampled product, a gallery row per candidate product."""
        query_picks, gallery_picks = query_rows.pick(queries, rng), gallery_rows.pick(products, rng)
        return Candidates(torch.from_numpy(query_picks), torch.from_numpy(gallery_picks))

    return {"i2t": draw(pool.images, pool.captions), "t2i": draw(pool.captions, pool.images)}


def positive_ranks(
    queries: torch.Tensor, gallery: torch.Tensor, candidates: torch.Tensor, chunk_size: int = 256
) -> torch.Tensor:
    """Rank of column 0 among each query's candidates: negatives scoring at least as high count against it,
    so a collapsed model (all scores equal) ranks last instead of scoring a perfect recall.

    Candidate features are gathered into (chunk, 1 + n, D) and scored by one einsum per chunk, so
    memory stays O(chunk_size x (1 + n) x D).
    """
    ranks = []
    for start in tqdm(range(0, queries.shape[0], chunk_size), desc="sample100", unit="chunk", leave=False):
        stop = start + chunk_size
        scores = torch.einsum("qd,qcd->qc", queries[start:stop], gallery[candidates[start:stop]])
        ranks.append((scores[:, 1:] >= scores[:, :1]).sum(dim=1))
    return torch.cat(ranks)


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Reject a bad `sample100.ks` up front rather than return a metric dict missing keys."""
    if len(ks) == 0 or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError(f"sample100.ks must be a non-empty list of positive integers, got {list(ks)}")
    return tuple(sorted(set(ks)))


@torch.inference_mode()
def sample100(
    split: EmbeddedSplit,
    num_queries: int = 1000,
    num_negatives: int = 100,
    seed: int = 0,
    ks: Sequence[int] = (1, 5, 10),
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Recall@k of the positive among 1 + `num_negatives` candidates, both directions, plus their mean.

    A query's rank counts the negatives scoring at least as high as its positive, so an exact tie
    counts against it. Features are scored as given (EmbeddedSplit keeps them unit-norm).
    """
    ks = check_ks(ks)
    draws = sample_candidates(split, num_queries, num_negatives, seed)
    device = torch.device(device)
    images, captions = split.image_features.to(device).float(), split.caption_features.to(device).float()
    features = {"i2t": (images, captions), "t2i": (captions, images)}
    results: dict[str, float] = {}
    for direction, draw in draws.items():
        query_features, gallery_features = features[direction]
        queries = query_features[draw.queries.to(device)]
        ranks = positive_ranks(queries, gallery_features, draw.gallery.to(device))
        results.update({f"{direction}_r{k}": (ranks < k).double().mean().item() for k in ks})
    results["mean_recall"] = float(np.mean(list(results.values())))
    return {**results, "queries": len(draws["i2t"].queries), "negatives": num_negatives, "seed": seed}
