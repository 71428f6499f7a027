"""The one shard reader: samples in order, unreadable shards warned about and skipped, split by worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import webdataset as wds

from fashion_clip.data.raw_samples import raw_samples


def _write_shard(path: Path, name: str, count: int = 3) -> str:
    """A shard of `count` caption-and-image samples keyed `<name>-<i>`."""
    with wds.TarWriter(str(path)) as sink:
        for i in range(count):
            sink.write({"__key__": f"{name}-{i}", "txt": f"caption {name} {i}", "jpg": b"\xff" * 600})
    return str(path)


def _shards(tmp_path: Path, count: int) -> list[str]:
    """`count` good shards named s0, s1, ..."""
    return [_write_shard(tmp_path / f"s{i}.tar", f"s{i}") for i in range(count)]


def test_samples_come_in_shard_order_as_member_bytes(tmp_path: Path) -> None:
    urls = _shards(tmp_path, 2)
    samples = list(raw_samples(urls))
    assert [s["__key__"] for s in samples] == [f"s{n}-{i}" for n in range(2) for i in range(3)]
    assert [s["__url__"] for s in samples] == [urls[0]] * 3 + [urls[1]] * 3
    assert samples[4]["txt"] == b"caption s1 1"
    assert samples[4]["jpg"] == b"\xff" * 600


def test_unreadable_shards_are_warned_about_and_reading_goes_on(tmp_path: Path) -> None:
    good = _shards(tmp_path, 2)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar archive" * 64)
    whole = Path(_write_shard(tmp_path / "cut.tar", "cut"))
    cut = tmp_path / "cut-short.tar"
    cut.write_bytes(whole.read_bytes()[:4000])  # a sample is 2560 bytes: this ends inside the second
    with pytest.warns(UserWarning) as warned:
        keys = [s["__key__"] for s in raw_samples([good[0], str(garbage), str(cut), good[1]])]
    assert keys[:3] == ["s0-0", "s0-1", "s0-2"]
    assert keys[-3:] == ["s1-0", "s1-1", "s1-2"]
    assert "cut-0" in keys and "cut-2" not in keys
    messages = " ".join(str(w.message) for w in warned)
    assert "garbage.tar" in messages and "cut-short.tar" in messages


class _WorkerKeys(torch.utils.data.IterableDataset):
    """(worker id, key) for each sample a DataLoader worker reads."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__()
        self.urls = urls

    def __iter__(self) -> Iterator[tuple[int, str]]:
        worker = torch.utils.data.get_worker_info().id
        return ((worker, sample["__key__"]) for sample in raw_samples(self.urls, by_worker=True))


def test_by_worker_deals_whole_shards_to_workers_in_turn(tmp_path: Path) -> None:
    urls = _shards(tmp_path, 5)
    loader = torch.utils.data.DataLoader(_WorkerKeys(urls), batch_size=None, num_workers=2)
    read: dict[int, list[str]] = {0: [], 1: []}
    for worker, key in loader:
        read[worker].append(key)
    assert read[0] == [f"s{n}-{i}" for n in (0, 2, 4) for i in range(3)]
    assert read[1] == [f"s{n}-{i}" for n in (1, 3) for i in range(3)]
