"""Parallel map that keeps input order and bounds memory, so shards are identical for any worker count."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

TASK_SIZE = 8
TASKS_PER_WORKER = 4


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Fixed-size groups, so one inter-process message carries several images."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _apply(fn: Callable[[T], R], batch: list[T]) -> list[R]:
    """Worker side of one task (module level so process pools can pickle it)."""
    return [fn(item) for item in batch]


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 1) -> Iterator[R]:
    """`map(fn, items)` on processes, with few tasks in flight so a 20 GB source streams, never read ahead."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = ProcessPoolExecutor(max_workers=workers)
    window: deque[Future[list[R]]] = deque()
    try:
        for batch in batched(items, TASK_SIZE):
            window.append(pool.submit(_apply, fn, batch))
            if len(window) >= workers * TASKS_PER_WORKER:
                yield from window.popleft().result()
        while window:
            yield from window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
