"""Where a train epoch stands, per data worker: what a checkpoint stores to resume mid-epoch."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

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
