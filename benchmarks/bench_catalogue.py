"""Shards for the benchmark: a synthetic train split per image size, generated once and reused."""

from __future__ import annotations

import math
from pathlib import Path

from fashion_clip.demo.catalogue import catalogue_is_complete, generate_demo_catalogue

SHARD_SIZE = 128  # small shards, so shards split evenly between data workers
VIEWS_PER_PRODUCT = 2  # the demo renderer draws 2-3 views per product: at least 2


def bench_shards(work_dir: Path, image_size: int, samples: int, workers: int) -> Path:
    """A train split of at least `samples` images (plus a quarter and a shard per worker to spare, as
    shards divide unevenly between workers) of `image_size` px JPEGs; regenerated only when it changes."""
    products = math.ceil((1.25 * samples + max(1, workers) * SHARD_SIZE) / VIEWS_PER_PRODUCT)
    root = work_dir / f"catalogue-{image_size}px"
    counts = {"train": products}
    if not catalogue_is_complete(root, counts, image_size, shard_size=SHARD_SIZE):
        generate_demo_catalogue(root, counts, image_size=image_size, shard_size=SHARD_SIZE, progress=True)
    return root / "train"
