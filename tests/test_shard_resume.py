"""An interrupted import resumes from its journal and ends byte-identical to an uninterrupted one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.raw_catalogue import mapping, shard_bytes

from fashion_clip.data.manifest import read_manifest
from fashion_clip.ingest.items import Entry
from fashion_clip.ingest.shard_journal import journal_path
from fashion_clip.ingest.sources.json_mapping import MappingKeys, mapping_entries
from fashion_clip.ingest.split_writer import WriterOptions, write_split

OPTIONS = WriterOptions(shard_size=4, progress=False)
SOURCE = {"source": "fixture"}


@pytest.fixture
def entries(tmp_path: Path) -> list[Entry]:
    records = mapping(tmp_path, products=9)
    records[5]["image_path"] = "images/missing.png"
    return mapping_entries(records, MappingKeys(), tmp_path)


def _interrupted(entries: list[Entry], after: int) -> Iterator[Entry]:
    yield from entries[:after]
    raise KeyboardInterrupt


def test_rerun_after_interruption_resumes_and_matches(entries: list[Entry], tmp_path: Path) -> None:
    clean = write_split(entries, tmp_path / "clean" / "train", "ds", OPTIONS, SOURCE)
    target = tmp_path / "resumed" / "train"
    with pytest.raises(KeyboardInterrupt):
        write_split(_interrupted(entries, 11), target, "ds", OPTIONS, SOURCE)
    assert not (target / "manifest.json").exists()
    assert journal_path(target, "ds").is_file()
    assert not list(target.glob("*.tmp"))

    resumed = write_split(entries, target, "ds", OPTIONS, SOURCE)
    assert resumed.resumed_shards == 2
    assert resumed.manifest == clean.manifest
    assert shard_bytes(target) == shard_bytes(tmp_path / "clean" / "train")
    assert [(r["item"], r["reason"]) for r in resumed.manifest.skipped] == [("2_1.png", "missing image file")]
    assert not journal_path(target, "ds").exists()
    assert (target / "products.txt").read_text() == (
        tmp_path / "clean" / "train" / "products.txt"
    ).read_text()


def test_changed_input_or_damaged_shard_is_rewritten(entries: list[Entry], tmp_path: Path) -> None:
    target = tmp_path / "out" / "train"
    with pytest.raises(KeyboardInterrupt):
        write_split(_interrupted(entries, 13), target, "ds", OPTIONS, SOURCE)
    other = write_split(entries, target, "ds", OPTIONS, {"source": "changed"})
    assert other.resumed_shards == 0

    with pytest.raises(KeyboardInterrupt):
        write_split(_interrupted(entries, 13), target, "ds", OPTIONS, SOURCE)
    (target / "ds.000001.tar").write_bytes(b"damaged")
    again = write_split(entries, target, "ds", OPTIONS, SOURCE)
    assert again.resumed_shards == 1
    assert read_manifest(target) == again.manifest
