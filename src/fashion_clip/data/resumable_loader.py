"""A train DataLoader that knows its position, so a checkpoint resumes the data mid-epoch."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from fashion_clip.data.epoch_stream import EpochStream
from fashion_clip.data.stream_position import StreamPosition


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
