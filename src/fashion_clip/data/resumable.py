"""A train DataLoader that knows its position per data worker, so a checkpoint resumes mid-epoch."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from fashion_clip.data.epoch_stream import EpochStream

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StreamPosition:
    """Epoch plus, per logical worker, batches yielded and raw samples read, and whose batch comes next.

    The loader takes batches from its workers round-robin, skipping workers that ran out, so these
    counts (not the total alone) say exactly where each worker's stream must restart.
    """

    epoch: int
    batches: int
    worker_batches: list[int]
    worker_samples: list[int]
    next_worker: int = 0

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
            return cls(epoch, batches, list(saved), list(state["worker_samples"]), int(state["next_worker"]))
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

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        start, self._next = self._next, StreamPosition.epoch_start(self._next.epoch + 1, self.workers)
        self.dataset.start, self._current = start, copy.deepcopy(start)
        remaining = None if self.dataset.length is None else max(0, self.dataset.length - start.batches)
        for worker, samples_read, batch in itertools.islice(super().__iter__(), remaining):
            self._current.advance(worker, samples_read)
            yield batch
        self._current = None

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
