"""Raw samples of WebDataset shards: the one place shards are opened and unreadable tar data is handled;
and the train split's evaluation slice (`data.train_eval=N`): its first N samples in shard order, scored
beside validation so over-fitting shows, at a cost bounded by N rather than by the train split."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import webdataset as wds

RawSample = dict[str, Any]


def raw_samples(urls: Iterable[str], *, by_worker: bool = False) -> Iterator[RawSample]:
    """Every sample of the shards at `urls`, in order, undecoded: member bytes by extension plus `__key__`
    and `__url__`. A shard or member that cannot be read is warned about and skipped, never fatal; samples
    that read but do not decode are the caller's to count. `by_worker` keeps only this DataLoader worker's
    share of the shards (every `num_workers`-th one), so workers never read the same shard."""
    shards: Iterable[dict[str, str]] = ({"url": url} for url in urls)
    if by_worker:
        shards = wds.split_by_worker(shards)
    return wds.tarfile_to_samples(handler=wds.warn_and_continue)(shards)


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
