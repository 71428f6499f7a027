"""A train DataLoader that knows its position per data worker, so a checkpoint resumes mid-epoch."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch

from fashion_clip.data.samples import DamagedShardsError

if TYPE_CHECKING:
    from fashion_clip.data.epoch_stream import EpochStream

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StreamPosition:
    """Epoch plus, per logical worker, batches yielded and raw samples read, and whose batch comes next.

    The loader takes batches from its workers round-robin, skipping workers that ran out, so these
    counts (not the total alone) say exactly where each worker's stream must restart. `passes` counts the
    times a short epoch restarted its read from the start (`next_pass`): the per-worker counts are those of
    the current read, `batches` the epoch's total.
    """

    epoch: int
    batches: int
    worker_batches: list[int]
    worker_samples: list[int]
    next_worker: int = 0
    passes: int = 0

    @classmethod
    def epoch_start(cls, epoch: int, workers: int) -> StreamPosition:
        """The beginning of `epoch` for a loader with `workers` workers."""
        return cls(epoch, 0, [0] * workers, [0] * workers)

    @classmethod
    def round_robin(cls, epoch: int, batches: int, workers: int, batch_size: int) -> StreamPosition:
        """Best guess without per-worker counts: assumes no worker ran out and no sample was corrupt."""
        counts = [len(range(worker, batches, workers)) for worker in range(workers)]
        return cls(epoch, batches, counts, [count * batch_size for count in counts], batches % workers)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], workers: int, batch_size: int) -> StreamPosition:
        """Read a checkpointed position; exact when it was saved with the same number of workers."""
        epoch, batches = int(state["epoch"]), int(state["batches"])
        saved = state.get("worker_batches")
        if saved is not None and len(saved) == workers:
            samples, next_worker = list(state["worker_samples"]), int(state["next_worker"])
            return cls(epoch, batches, list(saved), samples, next_worker, int(state.get("passes", 0)))
        if saved is not None:
            log.warning(
                "the data position was saved with %d data workers and this run has %d: epoch %d resumes "
                "after %d batches, but its sample order differs from the interrupted run",
                len(saved),
                workers,
                epoch,
                batches,
            )
        return cls.round_robin(epoch, batches, workers, batch_size)

    def advance(self, worker: int, samples_read: int) -> None:
        """Account for one batch from `worker`, which has now read `samples_read` raw samples."""
        self.batches += 1
        self.worker_batches[worker] += 1
        self.worker_samples[worker] = samples_read
        self.next_worker = (worker + 1) % len(self.worker_batches)

    def next_pass(self) -> StreamPosition:
        """The epoch's start again, keeping the batches counted so far: a rank whose damaged shards ran out
        before the epoch's length reads them again, in the same order with the same seeds."""
        workers = len(self.worker_batches)
        return StreamPosition(self.epoch, self.batches, [0] * workers, [0] * workers, 0, self.passes + 1)

    def as_state(self) -> dict[str, Any]:
        """Plain ints and lists for the checkpoint."""
        return dataclasses.asdict(self)


class ResumableLoader(torch.utils.data.DataLoader):
    """Each `iter()` starts the next epoch of an `EpochStream`; `state_dict()` is where the data stands.

    An epoch is exactly `len(dataset)` batches when that is known (a lower bound on what the workers can
    supply), as Lightning counts it, so direct iteration and a Lightning epoch agree on where one ends.
    Lightning saves `state_dict()` in checkpoints and, on resume, calls `load_state_dict()`, after which
    the next `iter()` regenerates the saved epoch and starts at its next batch instead of the next epoch.
    Workers are not persistent: each epoch's workers get the stream with its start position.

    Where the stream `refills` (DDP without resampling), undecodable samples that leave the workers short
    of the epoch's length make the loader read the epoch again from its start (`StreamPosition.next_pass`),
    so the first batches repeat, identical, until the length is reached; a warning counts the samples
    re-read. A worker's DamagedShardsError is raised at once on one process; under DDP it is kept in
    `failure` for the data module to raise on every rank at the same batch (datamodule.py).
    """

    def __init__(self, dataset: EpochStream, num_workers: int = 0, pin_memory: bool = False) -> None:
        # the stream seeds itself; a private generator for the workers' base seed keeps every epoch
        # from drawing on the training process's RNG
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            pin_memory=pin_memory,
            generator=torch.Generator(),
        )
        self.workers = max(1, num_workers)
        self._next = StreamPosition.epoch_start(0, self.workers)
        self._current: StreamPosition | None = None
        self.failure: DamagedShardsError | None = None
        self.reread_samples = 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        start, self._next = self._next, StreamPosition.epoch_start(self._next.epoch + 1, self.workers)
        self._current = copy.deepcopy(start)
        while True:
            yield from self._read_pass()
            if not self._short_under_ddp():
                break
            if not any(self._current.worker_batches):  # no batch on which every rank could learn why
                raise self.failure or self._no_batch_error(start.epoch)
            if not self.dataset.refills:  # resampled: a worker's skip check ended it, raised at this batch
                break
            self._warn_reread(self._current)
            self._current = self._current.next_pass()
        self._current = None

    def _short_under_ddp(self) -> bool:
        """Whether this rank's epoch ended before the length every rank runs, which would leave the others
        waiting for it."""
        length = self.dataset.length
        return self.dataset.world_size > 1 and length is not None and self._current.batches < length

    def _read_pass(self) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of one read of the epoch from the current position, up to the epoch's length."""
        length = self.dataset.length
        if length is not None and self._current.batches >= length:
            return
        self.dataset.start = copy.deepcopy(self._current)
        for worker, samples_read, batch in super().__iter__():
            if isinstance(batch, DamagedShardsError):
                self._fail(batch)
                continue
            self._current.advance(worker, samples_read)
            yield batch
            if length is not None and self._current.batches >= length:
                return

    def _fail(self, error: DamagedShardsError) -> None:
        """Keep a worker's skip-check failure; raise it at once unless ranks must stop together."""
        self.failure = self.failure or error
        if self.dataset.world_size == 1:
            raise error

    def _no_batch_error(self, epoch: int) -> DamagedShardsError:
        """A rank whose shards hold no full batch of decodable samples cannot run the agreed epoch."""
        dataset = self.dataset
        return DamagedShardsError(
            f"data.train: rank {dataset.rank} read all its shards of epoch {epoch} "
            f"({', '.join(dataset.rank_shards(epoch))}) and not one full batch of "
            f"data.batch_size={dataset.batch_size} decoded, so it cannot run the {dataset.length} batches "
            "every rank runs: check those shards (the warnings above name each bad sample) and re-ingest "
            "them from their source (docs/data.md)"
        )

    def _warn_reread(self, position: StreamPosition) -> None:
        """Say, and count, how many of the epoch's first samples this rank repeats to reach its length
        (at most that many: the next read may run short again, and then it warns again)."""
        short = self.dataset.length - position.batches
        repeated = short * self.dataset.batch_size
        self.reread_samples += repeated
        log.warning(
            "rank %d, epoch %d: undecodable samples left this rank %d batches short of the %d every rank "
            "runs, so it re-reads its shards from the start of the epoch (same order and seeds) and repeats "
            "the epoch's first %d samples; the warnings above name the bad ones",
            self.dataset.rank,
            position.epoch,
            short,
            self.dataset.length,
            repeated,
        )

    def state_dict(self) -> dict[str, Any]:
        """The position of the next batch: inside the epoch being iterated, else the next epoch's start."""
        return (self._current or self._next).as_state()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Make the next `iter()` continue from `state`; a finished epoch continues with the next one."""
        position = StreamPosition.from_state(state, self.workers, self.dataset.batch_size)
        length = self.dataset.length
        if length is not None and position.batches >= length:
            position = StreamPosition.epoch_start(position.epoch + 1, self.workers)
        self._next, self._current = position, None
