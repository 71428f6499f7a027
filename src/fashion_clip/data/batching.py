"""Batch composition for training (`data.batching`): which samples share a batch, and so which negatives.

`random` takes the shuffled stream as it comes (the data module keeps its own fast path for it).
`product_unique` puts at most one view of a product in a batch: the other views wait for a later batch, so
a pair loss never sees a product's second view as a negative. `category_hard` draws each batch mostly
from one or two categories, so the in-batch negatives are the hard ones (a dress against dresses).

Composers decide from each sample's json alone (product id, category) and are seeded per epoch and worker,
so a resumed worker replays its composition without decoding a single image. Samples that cannot be
decoded are checked out before composition, so a composed batch is always full.
"""

from __future__ import annotations

import collections
import functools
import logging
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fashion_clip.data.samples import OnSkip, decoded_samples
from fashion_clip.errors import ConfigError

log = logging.getLogger(__name__)

BATCHINGS = ("random", "product_unique", "category_hard")
POOL_BATCHES = 16


@dataclass(frozen=True)
class KeyedSample:
    """A raw shard sample with what composition reads, and how many corrupt samples came just before it."""

    sample: dict[str, Any]
    product: str
    category: str | None
    skipped: int


Composer = Callable[[Iterable[KeyedSample], int, random.Random], Iterator[list[KeyedSample]]]


def keyed_samples(samples: Iterable[dict[str, Any]], on_skip: OnSkip | None = None) -> Iterator[KeyedSample]:
    """Decodable samples with their product and category; corrupt ones are skipped, logged, counted and
    passed to `on_skip`."""
    for sample, decoded, skipped in decoded_samples(samples, lambda image: image, on_skip):
        if decoded is None:
            continue
        meta = decoded[0]
        category = meta.get("category")
        yield KeyedSample(
            sample,
            str(meta.get("product_id", sample.get("__key__", "?"))),
            None if category is None else str(category),
            skipped,
        )


def product_unique(
    samples: Iterable[KeyedSample], batch_size: int, rng: random.Random
) -> Iterator[list[KeyedSample]]:
    """Batches with distinct products; a repeated product's view waits, and waiting views go first.

    At the end of the stream, when fewer distinct products than a batch remain, the waiting views fill the
    last batches anyway: dropping them would lose more than the `batch_size - 1` samples an epoch may drop.
    """
    stream = iter(samples)
    waiting: collections.deque[KeyedSample] = collections.deque()
    while True:
        batch: list[KeyedSample] = []
        products: set[str] = set()
        for _ in range(len(waiting)):
            item = waiting.popleft()
            if len(batch) < batch_size and item.product not in products:
                batch.append(item)
                products.add(item.product)
            else:
                waiting.append(item)
        while len(batch) < batch_size and (item := next(stream, None)) is not None:
            if item.product in products:
                waiting.append(item)
            else:
                batch.append(item)
                products.add(item.product)
        while len(batch) < batch_size and waiting:
            batch.append(waiting.popleft())
        if len(batch) < batch_size:
            return
        yield batch


def category_hard(
    samples: Iterable[KeyedSample], batch_size: int, rng: random.Random, pool_size: int
) -> Iterator[list[KeyedSample]]:
    """Batches filled category by category from a pool, each category drawn with odds by its pool share.

    A large category usually fills a batch alone; a small one is topped up from another. Samples without
    a category form a group of their own (a warning says so), which amounts to random batches for them.
    """
    stream = iter(samples)
    pools: dict[str | None, collections.deque[KeyedSample]] = collections.defaultdict(collections.deque)
    pooled = 0
    warned = False
    while True:
        while pooled < pool_size and (item := next(stream, None)) is not None:
            if item.category is None and not warned:
                warned = True
                log.warning(
                    "data.batching=category_hard: sample %s has no 'category' in its json; samples without "
                    "one are batched among themselves, at random",
                    item.sample.get("__key__", "?"),
                )
            pools[item.category].append(item)
            pooled += 1
        if pooled < batch_size:
            return
        batch: list[KeyedSample] = []
        while len(batch) < batch_size:
            categories = [c for c, pool in pools.items() if pool]
            chosen = rng.choices(categories, weights=[len(pools[c]) for c in categories])[0]
            pool = pools[chosen]
            batch.extend(pool.popleft() for _ in range(min(batch_size - len(batch), len(pool))))
        pooled -= batch_size
        yield batch


def make_composer(batching: str, batch_size: int, pool_size: int | None) -> Composer | None:
    """The composer for `data.batching` (None for `random`, which streams batches directly)."""
    if batching not in BATCHINGS:
        raise ConfigError(
            f"data.batching={batching!r} is not one of {', '.join(BATCHINGS)}: random (the shuffled "
            "stream), product_unique (one view per product per batch) or category_hard (batches from one "
            "or two categories)"
        )
    if pool_size is not None and pool_size < batch_size:
        raise ConfigError(
            f"data.batching_pool={pool_size} is smaller than data.batch_size={batch_size}: the category pool "
            f"must hold at least one batch (null: {POOL_BATCHES} batches)"
        )
    if batching == "random":
        return None
    if batching == "product_unique":
        return product_unique
    return functools.partial(category_hard, pool_size=pool_size or POOL_BATCHES * batch_size)
