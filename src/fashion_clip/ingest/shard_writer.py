"""Deterministic, atomic WebDataset tar writing shared by the demo catalogue and dataset importers."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from fashion_clip.data.manifest import MANIFEST_NAME, Manifest, ShardEntry, sha256_file, write_manifest
from fashion_clip.ingest.shard_journal import (
    JournalEntry,
    ShardJournal,
    journal_path,
    read_journal,
    verified,
    write_journal,
)

Sample = Mapping[str, object]

TMP_SUFFIX = ".tmp"
MEMBER_MODE = 0o444
INDEX_DIGITS = 6


def _member_info(name: str, size: int) -> tarfile.TarInfo:
    """Pin every header field that tarfile would otherwise take from the clock or the current user."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = MEMBER_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _sample_members(sample: Sample) -> list[tuple[str, bytes]]:
    """Turn one sample dict into `{key}.{ext}` members, rejecting keys WebDataset would mis-group."""
    key = sample.get("__key__")
    if not isinstance(key, str) or not key or "." in key.rsplit("/", 1)[-1]:
        raise ValueError(f"sample key must be a non-empty str without '.' in its last part, got {key!r}")
    members = []
    for ext, value in sample.items():
        if ext.startswith("__"):
            continue
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"sample {key!r}: field {ext!r} must be bytes or str, got {type(value).__name__}")
        members.append((f"{key}.{ext}", bytes(value)))
    if not members:
        raise ValueError(f"sample {key!r} has no data fields")
    return members


class _PendingShard:
    """A tar being written under a temporary name; only `commit` makes it visible under its real name."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
        self.samples = 0
        self._keys: set[str] = set()
        self._file = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)

    def add(self, sample: Sample) -> None:
        """Append one sample; duplicate keys in a shard would silently merge two samples on read."""
        members = _sample_members(sample)
        key = str(sample["__key__"])
        if key in self._keys:
            raise ValueError(f"{self.path.name}: duplicate sample key {key!r}")
        self._keys.add(key)
        for name, data in members:
            self._tar.addfile(_member_info(name, len(data)), io.BytesIO(data))
        self.samples += 1

    def commit(self) -> ShardEntry:
        """Finish, fsync, then rename, so readers only ever see the old file or the complete new one."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)
        return ShardEntry(name=self.path.name, samples=self.samples, sha256=sha256_file(self.path))

    def abort(self) -> None:
        """Drop the partial file so a failed write leaves nothing but what was there before."""
        self._tar.close()
        self._file.close()
        self.tmp.unlink(missing_ok=True)


def write_shard(path: str | Path, samples: Iterable[Sample]) -> ShardEntry:
    """Write one shard byte-identically for identical input, replacing any existing file only when done."""
    shard = _PendingShard(path)
    try:
        for sample in samples:
            shard.add(sample)
    except BaseException:
        shard.abort()
        raise
    return shard.commit()


def shard_name(dataset: str, index: int, separator: str = "-") -> str:
    """Name of the index-th shard of a dataset, zero-padded so names sort in write order."""
    return f"{dataset}{separator}{index:0{INDEX_DIGITS}d}.tar"


def shard_pattern(dataset: str, count: int, separator: str = "-") -> str:
    """Brace range covering `count` shards, the form WebDataset and braceexpand accept."""
    if count == 0:
        return ""
    return f"{dataset}{separator}{{{0:0{INDEX_DIGITS}d}..{count - 1:0{INDEX_DIGITS}d}}}.tar"


class ShardSink:
    """Streams samples into fixed-size shards and writes the directory manifest once all are committed.

    The old manifest is removed up front, so an interrupted run never looks complete; the new one is only
    written by a clean `close` (leaving the `with` block on an exception discards the open shard).

    With a `resume_key` (a fingerprint of the input and options) every commit is journaled; a later sink
    with the same key adopts the journaled shards whose files are intact, and `resumed` tells the caller
    how many input items (one `write` or `skip` each) those shards already account for.
    """

    def __init__(
        self,
        out_dir: str | Path,
        dataset: str,
        shard_size: int = 1000,
        separator: str = "-",
        resume_key: str | None = None,
        encoding: dict | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.dataset = dataset
        self.shard_size = shard_size
        self.separator = separator
        self.manifest: Manifest | None = None
        self.encoding = encoding or {}
        self._current: _PendingShard | None = None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / MANIFEST_NAME).unlink(missing_ok=True)
        self._journal_path = journal_path(self.out_dir, dataset) if resume_key is not None else None
        self._journal = (
            verified(read_journal(self._journal_path, resume_key), self.out_dir)
            if self._journal_path is not None and resume_key is not None
            else ShardJournal("")
        )
        self.shards: list[ShardEntry] = [e.shard for e in self._journal.entries]
        self.skipped: list[dict] = list(self._journal.skipped)
        self.resumed = self._journal.consumed
        self._consumed = self.resumed

    @property
    def num_samples(self) -> int:
        """Samples accepted so far, committed or still in the open shard."""
        pending = self._current.samples if self._current else 0
        return sum(s.samples for s in self.shards) + pending

    def write(self, sample: Sample) -> None:
        """Add a sample, starting a new shard when the current one is full."""
        if self.manifest is not None:
            raise RuntimeError(f"ShardSink for {self.dataset!r} is already closed")
        if self._current is None:
            name = shard_name(self.dataset, len(self.shards), self.separator)
            self._current = _PendingShard(self.out_dir / name)
        self._current.add(sample)
        self._consumed += 1
        if self._current.samples >= self.shard_size:
            self._commit_current()

    def skip(self, record: dict) -> None:
        """Record a source item that was left out (and why), so the manifest accounts for it."""
        self.skipped.append(record)
        self._consumed += 1

    def close(self) -> Manifest:
        """Commit the last partial shard and write `manifest.json`; calling it again is a no-op."""
        if self.manifest is None:
            if self._current is not None:
                self._commit_current()
            self.manifest = Manifest(
                dataset=self.dataset,
                pattern=shard_pattern(self.dataset, len(self.shards), self.separator),
                shards=list(self.shards),
                skipped=list(self.skipped),
                encoding=self.encoding,
            )
            write_manifest(self.out_dir, self.manifest)
            if self._journal_path is not None:
                self._journal_path.unlink(missing_ok=True)
        return self.manifest

    def abort(self) -> None:
        """Discard the open shard without writing a manifest (committed shards stay but are unlisted)."""
        if self._current is not None:
            self._current.abort()
            self._current = None

    def _commit_current(self) -> None:
        """Make the open shard visible and remember its entry for the manifest."""
        assert self._current is not None
        entry = self._current.commit()
        self.shards.append(entry)
        self._current = None
        if self._journal_path is not None:
            self._journal.entries.append(JournalEntry(entry, self._consumed, len(self.skipped)))
            self._journal.skipped = list(self.skipped)
            write_journal(self._journal_path, self._journal)

    def __enter__(self) -> ShardSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
