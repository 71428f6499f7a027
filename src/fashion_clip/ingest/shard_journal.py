"""The resume journal a ShardSink keeps while writing, so an interrupted import continues where it stopped,
and the record of the settings a finished split was written with, so a rerun with others is noticed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fashion_clip.data.manifest import ShardEntry, sha256_file
from fashion_clip.utils.files import atomic_output, plain_file_name

JOURNAL_SUFFIX = ".journal.json"
SETTINGS_SUFFIX = ".settings.json"


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
    """The journal for this key, or an empty one when absent, unreadable, from a different run or naming
    a file outside the output folder (its names are hashed in place, so `/dev/zero` would hang a resume)."""
    try:
        raw = json.loads(path.read_text())
        entries = [
            JournalEntry(ShardEntry(**e["shard"]), int(e["consumed"]), int(e["skipped"]))
            for e in raw["entries"]
        ]
        for i, entry in enumerate(entries):
            plain_file_name(
                entry.shard.name, path, f"entries[{i}].shard.name", "it is rewritten from scratch"
            )
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


def canonical_json(settings: dict) -> str:
    """Settings as one JSON text: key order and non-JSON values (paths) fixed, so equal settings match."""
    return json.dumps(settings, sort_keys=True, default=str)


def fingerprint(**settings: object) -> str:
    """Resume key over everything that decides a run's bytes, so a changed input or option starts over."""
    return hashlib.sha256(canonical_json(settings).encode("utf-8")).hexdigest()


def settings_path(out_dir: str | Path, dataset: str) -> Path:
    """Hidden file beside the shards recording what a split was written from, named like the journal."""
    return Path(out_dir) / f".{dataset}{SETTINGS_SUFFIX}"


def write_settings(path: Path, settings: dict) -> None:
    """Record a split's settings atomically, as the JSON `read_settings` compares against."""
    with atomic_output(path) as tmp:
        tmp.write_text(canonical_json(settings))


def read_settings(path: Path) -> dict | None:
    """The recorded settings, or None when absent or unreadable (an unknown earlier run)."""
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) else None


def changed_settings(recorded: dict, settings: dict) -> list[str]:
    """Names of the settings whose values differ from the recorded ones, compared as JSON."""
    now = json.loads(canonical_json(settings))
    return sorted(key for key in recorded.keys() | now.keys() if recorded.get(key) != now.get(key))
