"""The resume journal a ShardSink keeps while writing, so an interrupted import continues where it stopped."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fashion_clip.data.manifest import ShardEntry, sha256_file
from fashion_clip.utils.atomic_output import atomic_output

JOURNAL_SUFFIX = ".journal.json"


@dataclass(frozen=True)
class JournalEntry:
    """A committed shard plus how far the input had been consumed when it was committed."""

    shard: ShardEntry
    consumed: int
    skipped: int


@dataclass
class ShardJournal:
    """Committed shards of one run; `key` fingerprints the input and options so a changed run starts over."""

    key: str
    entries: list[JournalEntry] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    @property
    def consumed(self) -> int:
        """Input items already accounted for by committed shards (written or skipped)."""
        return self.entries[-1].consumed if self.entries else 0


def journal_path(out_dir: str | Path, dataset: str) -> Path:
    """Hidden file beside the shards, named for the dataset so two datasets never share one."""
    return Path(out_dir) / f".{dataset}{JOURNAL_SUFFIX}"


def write_journal(path: Path, journal: ShardJournal) -> None:
    """Replace atomically: a crash while journaling must not lose the shards committed before it."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(asdict(journal)))


def read_journal(path: Path, key: str) -> ShardJournal:
    """The journal for this key, or an empty one when absent, unreadable or from a different run."""
    try:
        raw = json.loads(path.read_text())
        entries = [
            JournalEntry(ShardEntry(**e["shard"]), int(e["consumed"]), int(e["skipped"]))
            for e in raw["entries"]
        ]
        skipped = list(raw["skipped"])
    except (OSError, ValueError, KeyError, TypeError):
        return ShardJournal(key)
    return ShardJournal(key, entries, skipped) if raw.get("key") == key else ShardJournal(key)


def verified(journal: ShardJournal, out_dir: str | Path) -> ShardJournal:
    """Keep only the leading shards whose files still match their checksums; later work is redone."""
    kept: list[JournalEntry] = []
    for entry in journal.entries:
        path = Path(out_dir) / entry.shard.name
        if not path.is_file() or sha256_file(path) != entry.shard.sha256:
            break
        kept.append(entry)
    skipped = journal.skipped[: kept[-1].skipped] if kept else []
    return ShardJournal(journal.key, kept, skipped)


def file_identity(path: str | Path) -> str:
    """Path, size and mtime: cheap to compute for a 20 GB file, and changed by any rewrite of it."""
    stat = Path(path).stat()
    return f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def fingerprint(**settings: object) -> str:
    """Resume key over everything that decides a run's bytes, so a changed input or option starts over."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()
