"""Fashion-Gen raw pickles + PNGs to the seeds' JSON mapping, and on to shards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.raw_catalogue import fashiongen_raw, metadata, write_pickle, write_png

from fashion_clip.data.manifest import read_manifest
from fashion_clip.ingest.sources import fashiongen
from fashion_clip.ingest.sources import json_mapping as shards


def _convert(root: Path, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    code = fashiongen.main(["--root", str(root), "--split", "valid", *extra])
    return code, capsys.readouterr().out


def test_pickles_become_the_seed_mapping(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    names = fashiongen_raw(tmp_path, "valid", products=3)
    code, printed = _convert(tmp_path, capsys)
    assert code == 0 and "clip_dataset_valid.json" in printed
    records = json.loads((tmp_path / "clip_dataset_valid.json").read_text())
    assert [r["image_name"] for r in records] == names
    assert records[0] == {
        "image_path": "extracted_valid_images/1000_0.png",
        "image_name": "1000_0.png",
        "caption": "Black wool coat number 0.",
        "category": "JACKETS & COATS",
        "product_id": "1000",
    }
    assert json.loads((tmp_path / "clip_dataset_valid.skipped.json").read_text()) == []


def test_bad_pickles_and_images_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fashiongen_raw(tmp_path, "valid", products=2)
    info = tmp_path / "full_valid_info_PAI"
    (info / "900_corrupt.pkl").write_bytes(b"\x80\x02}q\x00(X\x03")
    write_pickle(info / "901_evil.pkl", os.system)
    write_pickle(info / "902_nokey.pkl", {b"img_name": b"902_0.png", b"captions": b"x"})
    base = {b"captions": b"Coat", b"super_cls_name": b"COATS", b"product_id": b"903"}
    write_pickle(info / "903_a.pkl", {**base, b"img_name": b"903_0.png"})
    write_pickle(info / "903_b.pkl", {**base, b"img_name": b"1000_0.png"})
    write_pickle(info / "904.pkl", {**base, b"img_name": b"1002_0.png", b"captions": [b"  ", b""]})
    write_pickle(
        info / "905.pkl", {**base, b"img_name": b"1003_0.png", b"captions": [b"Caf\xe9 cr\xe8me", b"Coat"]}
    )
    write_png(tmp_path / "extracted_valid_images" / "1003_0.png", seed=3)
    code, printed = _convert(tmp_path, capsys, "--out", str(tmp_path / "maps" / "valid.json"))
    assert code == 0
    skipped = json.loads((tmp_path / "maps" / "valid.skipped.json").read_text())
    assert {(s["item"], s["reason"]) for s in skipped} == {
        ("900_corrupt.pkl", "unreadable pickle"),
        ("901_evil.pkl", "unreadable pickle"),
        ("902_nokey.pkl", "missing key"),
        ("903_0.png", "missing image file"),
        ("1000_0.png", "duplicate image name"),
        ("1002_0.png", "empty caption"),
    }
    assert "posix.system" in next(s["detail"] for s in skipped if s["item"] == "901_evil.pkl")
    records = json.loads((tmp_path / "maps" / "valid.json").read_text())
    assert records[-1]["captions"] == ["Café crème", "Coat"]
    assert records[-1]["image_path"] == "../extracted_valid_images/1003_0.png"
    assert "decoded as windows-1252" in printed and "unreadable pickle" in printed


def test_missing_layout_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, printed = _convert(tmp_path, capsys)
    assert code == 2 and "no pickles" in printed


def test_nothing_usable_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_pickle(tmp_path / "full_valid_info_PAI" / "a.pkl", {b"img_name": b"a.png"})
    assert _convert(tmp_path, capsys)[0] == 1


def test_mapping_feeds_the_shard_writer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fashiongen_raw(tmp_path / "raw", "valid", products=4, views=3)
    mapping = tmp_path / "clip_dataset_valid.json"
    assert _convert(tmp_path / "raw", capsys, "--out", str(mapping))[0] == 0
    code = shards.main(["--json", str(mapping), "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    assert read_manifest(tmp_path / "out" / "val").num_samples == 12
    assert {m["product_id"] for m in metadata(tmp_path / "out" / "val")} == {"1000", "1001", "1002", "1003"}
