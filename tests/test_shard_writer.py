"""Shard writing must be byte-deterministic, atomic, and readable by WebDataset as the samples given."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import webdataset as wds
from braceexpand import braceexpand

from fashion_clip.data.manifest import MANIFEST_NAME, ShardEntry, read_manifest, sha256_file
from fashion_clip.ingest.shard_writer import ShardSink, shard_pattern, write_shard


def _samples(n: int, start: int = 0) -> list[dict]:
    return [
        {"__key__": f"s_{i:04d}", "jpg": bytes([i]) * (99 + i), "txt": f"caption {i}", "json": b"{}"}
        for i in range(start, start + n)
    ]


def _tar_keys(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return [m.name for m in tar.getmembers()]


def test_write_shard_is_byte_deterministic(tmp_path: Path) -> None:
    first = write_shard(tmp_path / "a.tar", _samples(5))
    second = write_shard(tmp_path / "b.tar", _samples(5))
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert first == ShardEntry(name="a.tar", samples=5, sha256=sha256_file(tmp_path / "a.tar"))
    assert second.sha256 == first.sha256


def test_members_are_ordered_with_fixed_headers(tmp_path: Path) -> None:
    write_shard(tmp_path / "x.tar", _samples(2))
    with tarfile.open(tmp_path / "x.tar") as tar:
        members = tar.getmembers()
        expected = [f"s_000{i}.{ext}" for i in range(2) for ext in ("jpg", "txt", "json")]
        assert [m.name for m in members] == expected
        headers = {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members}
        assert headers == {(0, 0, 0, "", "", 0o444)}
        assert tar.extractfile("s_0001.txt").read() == b"caption 1"


def test_webdataset_reads_back_the_samples(tmp_path: Path) -> None:
    written = _samples(4)
    write_shard(tmp_path / "w.tar", written)
    read = list(wds.WebDataset(str(tmp_path / "w.tar"), shardshuffle=False))
    assert [s["__key__"] for s in read] == [s["__key__"] for s in written]
    for got, sent in zip(read, written, strict=True):
        assert (got["jpg"], got["txt"]) == (sent["jpg"], sent["txt"].encode())


def test_existing_file_is_replaced_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "shard.tar"
    target.write_bytes(b"old")

    def samples_checking_old_file():
        for sample in _samples(3):
            assert target.read_bytes() == b"old"
            yield sample

    entry = write_shard(target, samples_checking_old_file())
    assert entry.samples == 3
    assert _tar_keys(target)[:1] == ["s_0000.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.tar"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "shard.tar"
    target.write_bytes(b"old")

    def failing():
        yield from _samples(2)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        write_shard(target, failing())
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.tar"]


@pytest.mark.parametrize(
    ("sample", "error"),
    [
        ({"__key__": "a.b", "txt": b"x"}, ValueError),
        ({"__key__": "", "txt": b"x"}, ValueError),
        ({"__key__": "k"}, ValueError),
        ({"__key__": "k", "txt": 3}, TypeError),
    ],
)
def test_bad_samples_are_rejected(tmp_path: Path, sample: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        write_shard(tmp_path / "bad.tar", [sample])
    assert list(tmp_path.iterdir()) == []


def test_duplicate_keys_in_a_shard_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        write_shard(tmp_path / "dup.tar", _samples(2) + _samples(1))


def test_str_fields_are_utf8_encoded(tmp_path: Path) -> None:
    write_shard(tmp_path / "s.tar", [{"__key__": "k", "txt": "café"}])
    with tarfile.open(tmp_path / "s.tar") as tar:
        assert tar.extractfile("k.txt").read() == "café".encode()


def test_sink_rotates_shards_and_writes_manifest(tmp_path: Path) -> None:
    with ShardSink(tmp_path, "ds", shard_size=3) as sink:
        for sample in _samples(7):
            sink.write(sample)
        sink.skip({"key": "broken", "reason": "undecodable image"})
    manifest = read_manifest(tmp_path)
    assert manifest == sink.manifest
    assert [s.name for s in manifest.shards] == ["ds-000000.tar", "ds-000001.tar", "ds-000002.tar"]
    assert [s.samples for s in manifest.shards] == [3, 3, 1]
    assert manifest.pattern == "ds-{000000..000002}.tar"
    assert list(braceexpand(manifest.pattern)) == [s.name for s in manifest.shards]
    assert manifest.skipped == [{"key": "broken", "reason": "undecodable image"}]
    for shard in manifest.shards:
        assert len(_tar_keys(tmp_path / shard.name)) == 3 * shard.samples
        assert sha256_file(tmp_path / shard.name) == shard.sha256
    assert not list(tmp_path.glob("*.tmp"))


def test_sink_output_is_deterministic(tmp_path: Path) -> None:
    manifests = []
    for name in ("one", "two"):
        with ShardSink(tmp_path / name, "ds", shard_size=2) as sink:
            for sample in _samples(5):
                sink.write(sample)
        manifests.append(sink.manifest)
    assert manifests[0] == manifests[1]
    assert (tmp_path / "one" / MANIFEST_NAME).read_text() == (tmp_path / "two" / MANIFEST_NAME).read_text()


def test_sink_failure_writes_no_manifest_and_no_temp(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("stale")
    with pytest.raises(RuntimeError), ShardSink(tmp_path, "ds", shard_size=2) as sink:
        for sample in _samples(3):
            sink.write(sample)
        raise RuntimeError("importer crashed")
    assert not (tmp_path / MANIFEST_NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds-000000.tar"]


def test_closed_sink_refuses_more_samples(tmp_path: Path) -> None:
    sink = ShardSink(tmp_path, "ds", shard_size=2)
    sink.write(_samples(1)[0])
    assert sink.close() is sink.close()
    with pytest.raises(RuntimeError, match="closed"):
        sink.write(_samples(1, start=1)[0])


def test_shard_pattern_edge_cases() -> None:
    assert shard_pattern("x", 1) == "x-{000000..000000}.tar"
    assert list(braceexpand(shard_pattern("x", 1))) == ["x-000000.tar"]
    assert shard_pattern("x", 0) == ""
