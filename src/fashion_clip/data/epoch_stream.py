"""Train batches as a function of (seed, epoch, rank, worker, batch), so any position can be replayed."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import webdataset as wds

from fashion_clip.data.batching import Composer, KeyedSample, keyed_samples
from fashion_clip.data.raw_samples import RawSample, raw_samples
from fashion_clip.data.resumable import StreamPosition
from fashion_clip.data.samples import CollateWithTokenizer, DamagedShardsError, DecodeOrSkip, SkipTally
from fashion_clip.data.weighted_sources import weighted_draws

# what a worker yields: (logical worker, raw samples it has read so far, batch); in place of a batch, the
# error that ended its stream because more than data.max_skip_fraction of its samples failed to decode
TaggedBatch = tuple[int, int, dict[str, torch.Tensor] | DamagedShardsError]


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, identical in every process (Python's `hash` of str is salted)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Run a block on its own CPU torch, Python and numpy RNG streams (timm's RandAugment draws from numpy's):
    augmentations and caption choice replay exactly, and with num_workers=0 the training process's own
    random state is left as it was."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        random.seed(derive_seed(seed, "python"))  # not `seed`: DecodeOrSkip's caption RNG starts from that
        np.random.seed(derive_seed(seed, "numpy") % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class CountingIterator(Iterator):
    """Counts the raw samples read, the unit a resumed worker skips (corrupt samples make batches uneven)."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = iter(items)
        self.count = 0

    def __next__(self) -> Any:
        item = next(self.items)
        self.count += 1
        return item

    def skip(self, n: int) -> None:
        """Read past `n` samples without decoding them."""
        collections.deque(itertools.islice(self, n), maxlen=0)


class EpochStream(torch.utils.data.IterableDataset):
    """Shuffled, augmented train batches, reproducible per epoch and resumable from a `StreamPosition`.

    Shards are shuffled with a per-epoch seed shared by every rank and worker, then split between them
    (no overlap); `resampled_batches` instead draws shards with replacement, `resampled_batches` batches
    per worker, from a per-(epoch, rank, worker) seed: uniformly, or in proportion to `weights` (one per
    url: its source's weight, data/weighted_sources.py). The sample shuffle buffer and each batch's
    augmentations and caption choices are seeded the same way, so skipping raw samples is enough to resume.
    Set `start` before each iteration (`ResumableLoader` does): workers receive a copy at that point.
    With a `compose` (data/batching.py) a worker's batches are composed from its stream instead of taken
    in order; resuming replays the composition of the batches already yielded, from the samples' json.
    A worker whose stream skips more than `max_skip_fraction` of its samples (samples.SkipTally) ends it,
    yielding the DamagedShardsError in place of a batch.
    """

    def __init__(
        self,
        urls: Sequence[str],
        decode: DecodeOrSkip,
        collate: CollateWithTokenizer,
        batch_size: int,
        shuffle_buffer: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        resampled_batches: int | None = None,
        length: int | None = None,
        compose: Composer | None = None,
        max_skip_fraction: float | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.urls = list(urls)
        self.decode = decode
        self.collate = collate
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.resampled_batches = resampled_batches
        self.length = length
        self.compose = compose
        self.max_skip_fraction = max_skip_fraction
        self.weights = weights
        self.start = StreamPosition.epoch_start(0, 1)

    def __len__(self) -> int:
        """Batches per epoch on this rank; a TypeError (as for any unsized iterable) without a manifest."""
        if self.length is None:
            raise TypeError("the train split has no manifest, so its epoch length is unknown")
        return self.length

    @property
    def refills(self) -> bool:
        """Whether a short epoch is made up by reading the rank's shards again from the epoch's start:
        under DDP without resampling each rank must yield the agreed `length`, or the others wait forever."""
        return self.world_size > 1 and self.resampled_batches is None and self.length is not None

    def __iter__(self) -> Iterator[TaggedBatch]:
        info = torch.utils.data.get_worker_info()
        workers, physical = (info.num_workers, info.id) if info is not None else (1, 0)
        # the loader asks physical workers 0, 1, ... in turn, so worker 0 plays whoever was due next
        return self._batches(self.start, (physical + self.start.next_worker) % workers, workers)

    def _worker_seed(self, epoch: int, worker: int, *parts: object) -> int:
        """Seed of one random choice of this epoch, rank and logical worker."""
        return derive_seed(self.seed, epoch, self.rank, worker, *parts)

    def _shards(self, epoch: int, worker: int, workers: int) -> Iterable[str]:
        """This worker's shard urls for the epoch (endless when resampled)."""
        if self.resampled_batches is not None:
            seed = self._worker_seed(epoch, worker, "shards")
            if self.weights is not None:
                return weighted_draws(self.urls, self.weights, seed)
            drawn = wds.ResampledShards(self.urls, deterministic=True, worker_seed=lambda: seed)
            return (shard["url"] for shard in drawn)
        return self.rank_shards(epoch)[worker::workers]

    def rank_shards(self, epoch: int) -> list[str]:
        """This rank's shard urls for a (not resampled) epoch, all its workers' together."""
        urls = list(self.urls)
        random.Random(derive_seed(self.seed, epoch, "shards")).shuffle(urls)
        return urls[self.rank :: self.world_size]

    def _samples(self, epoch: int, worker: int, workers: int) -> Iterator[RawSample]:
        """Raw (undecoded) samples of this worker's shards through the seeded shuffle buffer."""
        samples = raw_samples(self._shards(epoch, worker, workers))
        rng = random.Random(self._worker_seed(epoch, worker, "samples"))
        return wds.shuffle(self.shuffle_buffer, rng=rng)(samples)

    def _tally(self, samples: CountingIterator, epoch: int, worker: int) -> SkipTally:
        """The skip check of this worker's stream, over the samples it reads from now on (a resumed worker
        skips samples undecoded, so they cannot count)."""
        offset = samples.count
        where = f"by rank {self.rank}'s data worker {worker} in epoch {epoch}"
        return SkipTally(self.max_skip_fraction, lambda: samples.count - offset, where)

    def _batches(self, start: StreamPosition, worker: int, workers: int) -> Iterator[TaggedBatch]:
        """This worker's batches from `start`, ended by the DamagedShardsError its skip check raises."""
        samples = CountingIterator(self._samples(start.epoch, worker, workers))
        try:
            yield from self._decoded_batches(samples, start, worker)
        except DamagedShardsError as error:
            yield worker, samples.count, error

    def _decoded_batches(
        self, samples: CountingIterator, start: StreamPosition, worker: int
    ) -> Iterator[TaggedBatch]:
        """Skip what this worker yielded before `start`, then decode and batch the rest (full batches)."""
        first, last = start.worker_batches[worker], self.resampled_batches
        indices = itertools.count(first) if last is None else range(first, last)
        if self.compose is not None:
            yield from self._composed_batches(samples, start.epoch, worker, first, indices)
            return
        samples.skip(start.worker_samples[worker])
        tally = self._tally(samples, start.epoch, worker)
        for index in indices:
            with seeded_rng(self._worker_seed(start.epoch, worker, "batch", index)):
                decoded = list(itertools.islice(self.decode(samples, tally), self.batch_size))
            if len(decoded) < self.batch_size:
                return
            yield worker, samples.count, self.collate(decoded)

    def _composed_batches(
        self, samples: CountingIterator, epoch: int, worker: int, first: int, indices: Iterable[int]
    ) -> Iterator[TaggedBatch]:
        """Compose batches from the json, replay the first `first` of them, then decode each one."""
        rng = random.Random(self._worker_seed(epoch, worker, "batching"))
        tally = self._tally(samples, epoch, worker)
        composed = self.compose(keyed_samples(samples, tally), self.batch_size, rng)
        collections.deque(itertools.islice(composed, first), maxlen=0)
        for index, batch in zip(indices, composed, strict=False):  # indices end first when resampled
            yield worker, samples.count, self._decode_composed(batch, epoch, worker, index, tally)

    def _decode_composed(
        self, batch: list[KeyedSample], epoch: int, worker: int, index: int, tally: SkipTally
    ) -> dict[str, torch.Tensor]:
        """Decode a composed batch on the batch's own seed; corrupt samples skipped before it count here."""
        with seeded_rng(self._worker_seed(epoch, worker, "batch", index)):
            collated = self.collate(list(self.decode((item.sample for item in batch), tally)))
        collated["skipped"] += sum(item.skipped for item in batch)
        return collated
