"""Overrides that make a `train` run small enough for a test: the tiny model on CPU, in-process data."""

from __future__ import annotations

TINY_ON_CPU = (
    "model=tiny",
    "trainer=cpu",
    "data.num_workers=0",
    "data.batch_size=16",
    "data.eval_batch_size=32",
)
