"""Set-up for the index and search tests: the tiny model loaded by path, indexes and a brute-force ranking."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from fashion_clip.models.checkpoint import load_weights
from fashion_clip.models.factory import ClipBundle, create_clip
from fashion_clip.models.identity import ModelIdentity, clip_config, identify
from fashion_clip.retrieval.embedding import ImageRecord
from fashion_clip.retrieval.index_file import IndexData, build_index, open_catalogue

from .tiny_model import TINY


def load_tiny(ckpt: Path) -> tuple[ClipBundle, ModelIdentity]:
    """The tiny model with the saved weights, in eval mode, and its identity."""
    bundle = create_clip(TINY)
    load_weights(bundle.model, ckpt, TINY)
    bundle.model.eval()
    return bundle, identify(bundle.model, clip_config(TINY), str(ckpt))


def index_of(bundle: ClipBundle, identity: ModelIdentity, source: Path) -> IndexData:
    """Index a shard split or an image folder in this process (no worker processes: faster in tests)."""
    dataset = open_catalogue(str(source), bundle.val_transform)
    return build_index(bundle, dataset, identity, str(source), batch_size=16, num_workers=0)


def brute_force_products(index: IndexData, query: torch.Tensor, k: int) -> list[tuple[str, float]]:
    """Every row scored one by one, each product's best kept, sorted: the ranking search must give."""
    best: dict[str, float] = {}
    for row, record in enumerate(index.records):
        score = float(index.embeddings[row].float() @ query.float())
        best[record.product_id] = max(best.get(record.product_id, -math.inf), score)
    return sorted(best.items(), key=lambda item: -item[1])[:k]


def synthetic_index(rows_per_product: list[int], dim: int = 32, seed: int = 0) -> IndexData:
    """Random unit-norm fp16 rows, product i owning `rows_per_product[i]` rows, shuffled."""
    generator = torch.Generator().manual_seed(seed)
    products = [f"p{i}" for i, n in enumerate(rows_per_product) for _ in range(n)]
    order = torch.randperm(len(products), generator=generator).tolist()
    records = [
        ImageRecord(f"k{row}", products[i], "cat", f"caption {i}", "x.tar") for row, i in enumerate(order)
    ]
    embeddings = torch.nn.functional.normalize(torch.randn(len(records), dim, generator=generator), dim=1)
    identity = ModelIdentity(clip_config(TINY), None, dim, "0" * 64)
    return IndexData(embeddings.half(), records, identity, "synthetic")
