"""Raw samples of WebDataset shards: the one place shards are opened and unreadable tar data is handled."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
