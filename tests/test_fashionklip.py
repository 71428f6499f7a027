"""FashionKLIP's queries JSONL + preprocessed image arrays to shards, one sample per image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.raw_catalogue import decoded, image_array, metadata, read_split

from fashion_clip.data.manifest import read_manifest
from fashion_clip.ingest.items import CLIP_MEAN, CLIP_STD
from fashion_clip.ingest.sources import fashionklip


def _layout(root: Path) -> tuple[Path, Path]:
    queries = [
        {"query_id": 1, "query_text": "white sneakers", "item_ids": ["i1", "i2"]},
        {"query_id": 2, "query_text": "leather sneakers", "item_ids": ["i1"]},
        {"query_id": 3, "query_text": "red bag", "item_ids": ["i3", "i9"]},
        {"query_id": 4, "query_text": "no items"},
    ]
    path = root / "fashionklip_train_queries.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in queries) + "\nnot json\n")
    chw = image_array(2).transpose(2, 0, 1).astype(np.float32) / 255.0
    normalised = (image_array(3).astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    arrays = {"i1": image_array(1), "i2": chw, "i3": normalised.transpose(2, 0, 1), "i4": image_array(4)}
    np.savez(root / "images.npz", **arrays)
    return path, root / "images.npz"


def test_queries_become_captions_of_their_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    queries, images = _layout(tmp_path)
    argv = ["--queries", str(queries), "--images", str(images), "--output-dir", str(tmp_path / "out")]
    assert fashionklip.main([*argv, "--no-progress"]) == 0
    meta = metadata(tmp_path / "out" / "train")
    assert [(m["product_id"], m["captions"]) for m in meta] == [
        ("i1", ["white sneakers", "leather sneakers"]),
        ("i2", ["white sneakers"]),
        ("i3", ["red bag"]),
    ]
    skipped = read_manifest(tmp_path / "out" / "train").skipped
    assert [(s["item"], s["reason"]) for s in skipped] == [
        ("query 3", "malformed record"),
        ("fashionklip_train_queries.jsonl:5", "malformed record"),
        ("i4", "empty caption"),
        ("i9", "missing image file"),
    ]
    samples = read_split(tmp_path / "out" / "train")
    assert list(samples) == ["000000002", "000000003", "000000004"]
    assert "Skipped" in capsys.readouterr().out


def test_array_layouts_round_trip_through_jpeg(tmp_path: Path) -> None:
    queries, images = _layout(tmp_path)
    fashionklip.main(
        [
            "--queries",
            str(queries),
            "--images",
            str(images),
            "--output-dir",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )

    for key, seed in (("000000003", 2), ("000000004", 3)):
        stored = np.asarray(decoded(read_split(tmp_path / "o" / "train")[key]["jpg"]), dtype=np.float32)
        assert np.median(np.abs(stored - image_array(seed))) <= 3.0


def test_unreadable_npz_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    queries, images = _layout(tmp_path)
    images.write_bytes(b"PK\x03\x04 broken zip")
    code = fashionklip.main(
        ["--queries", str(queries), "--images", str(images), "--output-dir", str(tmp_path)]
    )
    assert code == 2 and "unreadable FashionKLIP input" in capsys.readouterr().out
