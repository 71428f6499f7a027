"""Write one split's items as `{dataset}.NNNNNN.tar` shards plus manifest, resumably and in parallel.

A finished split records the settings it was written with (`.{dataset}.settings.json`), so a rerun from
another input or with other options is refused unless asked to replace it (`refuse_changed_split`).
Items are encoded by a parallel map that keeps input order and bounds memory, so shards are identical
for any worker count.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from fashion_clip.data.manifest import MANIFEST_NAME, Manifest, read_manifest
from fashion_clip.errors import UserError
from fashion_clip.ingest.items import JPEG_QUALITY, CatalogueItem, Entry, Rejected, encoder
from fashion_clip.ingest.product_split import write_products
from fashion_clip.ingest.shard_journal import (
    changed_settings,
    fingerprint,
    read_settings,
    settings_path,
    write_settings,
)
from fashion_clip.ingest.shard_writer import INDEX_DIGITS, ShardSink
from fashion_clip.utils.files import OutputExistsError

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


SEPARATOR = "."
# the products left out for sibling splits follow the other splits on disk, not this run's input or options
UNCOMPARED = ("siblings",)


class RefusedOutput(UserError):
    """The output directory belongs to another dataset; writing there would mix two catalogues."""


@dataclass(frozen=True)
class WriterOptions:
    """How shards are cut and encoded; all but `workers` and `progress` decide the bytes written."""

    shard_size: int = 1000
    max_shards: int | None = None
    max_side: int | None = None
    workers: int = 1
    progress: bool = True
    jpeg_quality: int = JPEG_QUALITY

    def byte_settings(self) -> dict:
        """The options that change output bytes, which is what a resume must match; the default quality is
        what every earlier version wrote, so it stays out and their records still match."""
        settings = {"shard_size": self.shard_size, "max_shards": self.max_shards, "max_side": self.max_side}
        return settings | ({} if self.jpeg_quality == JPEG_QUALITY else {"jpeg_quality": self.jpeg_quality})

    def encoding(self) -> dict:
        """How images were re-encoded, for the manifest: what a reader of the shards may want to know."""
        return {"max_side": self.max_side, "jpeg_quality": self.jpeg_quality}


@dataclass(frozen=True)
class SplitResult:
    """What one split run left on disk, for the summary table and the exit code."""

    split: str
    directory: Path
    manifest: Manifest
    resumed_shards: int
    truncated: bool


def _own_shard(dataset: str) -> re.Pattern[str]:
    """Names this dataset's shards (and their temporary files) may have."""
    return re.compile(rf"{re.escape(dataset)}{re.escape(SEPARATOR)}\d{{{INDEX_DIGITS}}}\.tar(\.tmp)?")


def check_output_dir(out_dir: Path, dataset: str) -> None:
    """Refuse a directory holding another dataset's shards: one manifest must describe one catalogue."""
    own = _own_shard(dataset)
    foreign = sorted(p.name for p in out_dir.glob("*.tar*") if not own.fullmatch(p.name))
    owner = read_manifest(out_dir).dataset if (out_dir / MANIFEST_NAME).is_file() else dataset
    if owner != dataset:
        foreign.insert(0, f"{MANIFEST_NAME} of {owner!r}")
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise RefusedOutput(
            f"{out_dir} already holds shards of another dataset ({shown}); "
            f"choose an empty --output-dir or remove them to write {dataset!r} there"
        )


def run_settings(dataset: str, source: dict, options: WriterOptions) -> dict:
    """Everything that decides a split's bytes: the resume key, and the record a finished split keeps."""
    return {"dataset": dataset, **source, **options.byte_settings()}


def refuse_changed_split(
    out_dir: Path, dataset: str, source: dict, options: WriterOptions, overwrite: bool
) -> None:
    """Before anything is written: refuse another dataset's directory and, unless `overwrite`, a finished
    split written from another input or with other options (a rerun with the same ones rewrites the same
    bytes, so it goes ahead)."""
    check_output_dir(out_dir, dataset)
    if overwrite or not (out_dir / MANIFEST_NAME).is_file():
        return
    recorded = read_settings(settings_path(out_dir, dataset))
    if recorded is None:
        why = "by a run that left no record of its input and options"
    else:
        changed = [
            k
            for k in changed_settings(recorded, run_settings(dataset, source, options))
            if k not in UNCOMPARED
        ]
        if not changed:
            return
        why = f"from another input or with other options ({', '.join(changed)} changed)"
    raise OutputExistsError(
        f"{out_dir} holds a finished split written {why}; pass --overwrite to replace it, "
        "or choose another --output-dir"
    )


def remove_stale(out_dir: Path, manifest: Manifest) -> list[str]:
    """Delete this dataset's shards the manifest does not list (left by a longer earlier run)."""
    listed = {s.name for s in manifest.shards}
    own = _own_shard(manifest.dataset)
    stale = sorted(p for p in out_dir.iterdir() if own.fullmatch(p.name) and p.name not in listed)
    for path in stale:
        path.unlink()
    return [p.name for p in stale]


def _resumed_products(entries: Iterator[Entry], count: int, skipped: list[dict]) -> set[str]:
    """Products of the items already in adopted shards, read off the stream without encoding anything."""
    dropped = {record["index"] for record in skipped}
    return {
        e.product_id
        for e in islice(entries, count)
        if isinstance(e, CatalogueItem) and e.index not in dropped
    }


def write_split(
    entries: Iterable[Entry],
    out_dir: Path,
    dataset: str,
    options: WriterOptions,
    source: dict,
    total: int | None = None,
) -> SplitResult:
    """Encode and shard a split; `source` identifies the input, so a rerun resumes only on the same input."""
    out_dir.mkdir(parents=True, exist_ok=True)
    check_output_dir(out_dir, dataset)
    settings = run_settings(dataset, source, options)
    stream = iter(entries)
    truncated = False
    with ShardSink(
        out_dir,
        dataset,
        options.shard_size,
        SEPARATOR,
        resume_key=fingerprint(**settings),
        encoding=options.encoding(),
    ) as sink:
        resumed_shards = len(sink.shards)
        products = _resumed_products(stream, sink.resumed, sink.skipped)
        bar = tqdm(total=total, initial=sink.resumed, desc=dataset, unit="img", disable=not options.progress)
        encode = encoder(options.max_side, options.jpeg_quality)
        with bar:
            for result in ordered_map(encode, stream, options.workers):
                if options.max_shards is not None and len(sink.shards) >= options.max_shards:
                    truncated = True
                    break
                if isinstance(result, Rejected):
                    sink.skip(result.record())
                else:
                    sink.write(result)
                    products.add(result["__product__"])
                bar.update()
        # recorded before the manifest makes the split finished, so a finished split always has its record
        write_settings(settings_path(out_dir, dataset), settings)
        manifest = sink.close()
    remove_stale(out_dir, manifest)
    write_products(out_dir, products)
    return SplitResult(out_dir.name, out_dir, manifest, resumed_shards, truncated)
