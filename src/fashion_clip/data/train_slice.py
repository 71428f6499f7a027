"""The train split's evaluation slice (`data.train_eval=N`): its first N samples in shard order, scored
beside validation so over-fitting shows, at a cost bounded by N rather than by the train split."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from fashion_clip.data.raw_samples import RawSample, raw_samples


def is_sample_count(train_eval: Any) -> bool:
    """Whether `data.train_eval` names a number of train samples rather than a shard spec of its own."""
    return isinstance(train_eval, int) and not isinstance(train_eval, bool)


def first_samples(urls: Sequence[str], count: int) -> Iterator[RawSample]:
    """The first `count` samples of the shards in their listed (manifest) order: the same samples in every
    epoch, run and worker layout, and only the shards they span are opened."""
    return itertools.islice(raw_samples(urls), count)


def slice_size(count: int, train_samples: int | None) -> int:
    """Samples in the slice: `count`, or the whole train split when it holds fewer (without a manifest its
    size is unknown and `count` bounds it)."""
    return count if train_samples is None else min(count, train_samples)
