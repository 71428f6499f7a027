"""The process pool returns results in input order and stops cleanly when the consumer stops early."""

from __future__ import annotations

from itertools import islice

from fashion_clip.ingest.split_writer import batched, ordered_map


def test_batched_groups() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_order_is_kept_with_workers_and_early_stop() -> None:
    assert list(ordered_map(abs, range(-100, 0), workers=2)) == list(range(100, 0, -1))
    assert list(islice(ordered_map(abs, range(-(10**6), 0), workers=2), 5)) == [10**6 - i for i in range(5)]
