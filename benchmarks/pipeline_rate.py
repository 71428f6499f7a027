"""The training data pipeline alone: decode + augment + tokenize from shards, through our train loader."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from fashion_clip.data.datamodule import WebDatasetDataModule
from fashion_clip.models.factory import ClipBundle


def pipeline_samples_per_s(
    shards: Path, clip: ClipBundle, batch_size: int, workers: int, warmup: int, batches: int
) -> float:
    """Samples/s of `batches` train batches after `warmup` (workers starting, shuffle buffer filling)."""
    datamodule = WebDatasetDataModule(
        train=str(shards),
        batch_size=batch_size,
        num_workers=workers,
        train_transform=clip.train_transform,
        val_transform=clip.val_transform,
        tokenizer=clip.tokenizer,
    )
    loader = iter(datamodule.train_dataloader())
    for _ in itertools.islice(loader, warmup):
        pass
    start = time.perf_counter()
    timed = sum(1 for _ in itertools.islice(loader, batches))
    seconds = time.perf_counter() - start
    if timed < batches:
        raise RuntimeError(
            f"{shards} ran out after {warmup + timed} batches of {batch_size}; {warmup + batches} needed"
        )
    return batches * batch_size / seconds
