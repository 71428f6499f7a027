"""JSON / JSONL mappings to shards: the format the trainer reads, every bad input, splits and reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import webdataset as wds
from braceexpand import braceexpand
from helpers.raw_catalogue import (
    decoded,
    mapping,
    metadata,
    read_split,
    shard_bytes,
    truncate,
    write_json,
    write_png,
)

from fashion_clip.data.manifest import read_manifest, sha256_file
from fashion_clip.data.shard_spec import count_samples, resolve_shards
from fashion_clip.ingest.sources.json_mapping import main


def _run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str]:
    code = main([*map(str, argv), "--no-progress"])
    return code, capsys.readouterr().out


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    """Twelve products with two views each, as `clip_dataset_valid.json`."""
    return write_json(tmp_path / "clip_dataset_valid.json", mapping(tmp_path, products=12))


def test_writes_the_documented_layout(seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "webdataset_shards"
    code, printed = _run(capsys, "--json", seeds, "--output-dir", out, "--shard-size", 10)
    assert code == 0
    val = out / "val"
    manifest = read_manifest(val)
    assert [s.name for s in manifest.shards] == [f"clip_dataset_valid.{i:06d}.tar" for i in range(3)]
    assert manifest.pattern == "clip_dataset_valid.{000000..000002}.tar"
    assert "Shard pattern: clip_dataset_valid.{000000..000002}.tar" in printed
    assert list(braceexpand(manifest.pattern)) == [s.name for s in manifest.shards]
    assert [s.samples for s in manifest.shards] == [10, 10, 4]
    assert all(sha256_file(val / s.name) == s.sha256 for s in manifest.shards)
    samples = read_split(val)
    assert list(samples) == [f"{i:09d}" for i in range(24)]
    first = samples["000000000"]
    assert set(first) == {"jpg", "txt", "json"}
    assert first["txt"] == b"Red cotton shirt 0."
    assert json.loads(first["json"]) == {
        "product_id": "p0",
        "category": "SHIRTS",
        "captions": ["Red cotton shirt 0."],
        "image_name": "0_0.png",
    }
    image = decoded(first["jpg"])
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 40))
    assert count_samples(str(val)) == 24
    assert resolve_shards(str(val)) == [str(val / s.name) for s in manifest.shards]
    read = list(wds.WebDataset(resolve_shards(str(val)), shardshuffle=False))
    assert [s["__key__"] for s in read] == list(samples)


def test_every_bad_input_is_skipped_with_its_reason(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    records = mapping(tmp_path, products=3)
    truncate(write_png(tmp_path / "images" / "broken.png", seed=7))
    (tmp_path / "images" / "garbage.png").write_bytes(b"not an image at all")
    records += [
        {"image_path": "images/missing.png", "caption": "x", "product_id": "a"},
        {"image_path": "images/broken.png", "caption": "x", "product_id": "b"},
        {"image_path": "images/garbage.png", "caption": "x", "product_id": "c"},
        {"image_path": "images/0_1.png", "image_name": "0_1.png", "caption": "again", "product_id": "p0"},
        {"image_path": "images/1_1.png", "caption": "   \t", "product_id": "d"},
        {"image_path": "images/1_1.png", "caption": "", "product_id": "e"},
        {"caption": "no image key", "product_id": "f"},
        {"image_path": "images/2_0.png", "product_id": "g"},
        "not an object",
    ]
    path = tmp_path / "clip_dataset_train.json"
    path.write_bytes(json.dumps(records).encode().replace(b"Red cotton shirt 2.", b"Caf\xe9 shirt 2."))
    code, printed = _run(capsys, "--json", path, "--output-dir", tmp_path / "out")
    assert code == 0
    manifest = read_manifest(tmp_path / "out" / "train")
    assert manifest.num_samples == 6
    reasons = {r["index"]: r["reason"] for r in manifest.skipped}
    assert reasons == {
        6: "missing image file",
        7: "unreadable or truncated image",
        8: "unreadable or truncated image",
        9: "duplicate image name",
        10: "empty caption",
        11: "empty caption",
        12: "missing key",
        13: "missing key",
        14: "malformed record",
    }
    captions = {m["captions"][0] for m in metadata(tmp_path / "out" / "train")}
    assert "Café shirt 2." in captions
    for text in ("Skipped", "missing image file", "duplicate image name", "decoded as windows-1252"):
        assert text in printed


def test_indofashion_json_lines_with_custom_keys_and_caption_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_png(tmp_path / "a.png", 1)
    write_png(tmp_path / "b.png", 2)
    rows = [
        {
            "image_path": "a.png",
            "product_title": "Silk saree",
            "captions": ["Silk saree", "A red  saree"],
            "class_label": "saree",
        },
        {"image_path": "b.png", "product_title": "Kurta", "class_label": "kurta"},
    ]
    path = tmp_path / "test_data.json"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    code, _ = _run(
        capsys,
        "--json",
        path,
        "--output-dir",
        tmp_path / "out",
        "--caption-key",
        "product_title",
        "--category-key",
        "class_label",
    )
    assert code == 0
    meta = metadata(tmp_path / "out" / "test")
    assert [m["captions"] for m in meta] == [["Silk saree", "A red saree"], ["Kurta"]]
    assert [m["category"] for m in meta] == ["saree", "kurta"]
    assert [m["product_id"] for m in meta] == ["a.png", "b.png"]
    assert read_manifest(tmp_path / "out" / "test").skipped[0]["reason"] == "malformed record"


def test_test_fraction_carves_by_product(seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code, _ = _run(capsys, "--json", seeds, "--output-dir", out, "--test-fraction", "0.4")
    assert code == 0
    val, test = ({m["product_id"] for m in metadata(out / split)} for split in ("val", "test"))
    assert val and test and not val & test
    assert len(val | test) == 12
    assert read_manifest(out / "val").num_samples + read_manifest(out / "test").num_samples == 24
    assert read_manifest(out / "test").dataset == "clip_dataset_valid_test"
    assert (out / "test" / "products.txt").read_text().split() == sorted(test)


def test_products_of_other_splits_are_left_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    records = mapping(tmp_path, products=4)
    train = write_json(tmp_path / "train.json", records[:6])
    val = write_json(tmp_path / "val.json", records[4:])
    assert _run(capsys, "--json", train, "--output-dir", tmp_path / "out")[0] == 0
    assert _run(capsys, "--json", val, "--output-dir", tmp_path / "out")[0] == 0
    assert {m["product_id"] for m in metadata(tmp_path / "out" / "val")} == {"p3"}
    skipped = read_manifest(tmp_path / "out" / "val").skipped
    assert [(s["reason"], s["detail"]) for s in skipped] == [
        ("product in another split", "product p2 is in split 'train'")
    ] * 2


def test_workers_and_resume_give_byte_identical_shards(
    seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--json", seeds, "--shard-size", 5, "--max-side", 24]
    assert _run(capsys, *args, "--output-dir", tmp_path / "one")[0] == 0
    assert _run(capsys, *args, "--output-dir", tmp_path / "two", "--workers", 2)[0] == 0
    reference = shard_bytes(tmp_path / "one" / "val")
    assert shard_bytes(tmp_path / "two" / "val") == reference
    assert all(max(decoded(s["jpg"]).size) == 24 for s in read_split(tmp_path / "one" / "val").values())

    code, printed = _run(capsys, *args, "--output-dir", tmp_path / "one")
    assert code == 0 and "resumed" not in printed
    assert shard_bytes(tmp_path / "one" / "val") == reference


def test_max_side_and_jpeg_quality_are_applied_and_recorded_in_the_manifest(
    seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sizes = {}
    for quality in (95, 40):
        out = tmp_path / f"q{quality}"
        args = ["--json", seeds, "--output-dir", out, "--max-side", 24, "--jpeg-quality", quality]
        assert _run(capsys, *args)[0] == 0
        assert read_manifest(out / "val").encoding == {"max_side": 24, "jpeg_quality": quality}
        samples = read_split(out / "val").values()
        assert all(max(decoded(s["jpg"]).size) == 24 for s in samples)
        sizes[quality] = sum(len(s["jpg"]) for s in samples)
    assert sizes[40] < sizes[95]
    code, printed = _run(capsys, "--json", seeds, "--output-dir", tmp_path / "bad", "--jpeg-quality", 0)
    assert code == 2 and "--jpeg-quality must be between 1 and 100, got 0" in printed


def test_rerun_with_fewer_shards_removes_stale_ones(
    seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert _run(capsys, "--json", seeds, "--output-dir", out, "--shard-size", 5)[0] == 0
    fewer = ["--json", seeds, "--output-dir", out, "--shard-size", 5, "--max-shards", 2]
    code, printed = _run(capsys, *fewer, "--overwrite")  # other options replace a finished split if asked
    assert code == 0 and "stopped at --max-shards" in printed
    names = sorted(p.name for p in (out / "val").glob("*.tar"))
    assert names == ["clip_dataset_valid.000000.tar", "clip_dataset_valid.000001.tar"]
    assert read_manifest(out / "val").num_samples == 10


def test_output_holding_another_dataset_is_refused(
    seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    (out / "val").mkdir(parents=True)
    (out / "val" / "other.000000.tar").write_bytes(b"x")
    code, printed = _run(capsys, "--json", seeds, "--output-dir", out)
    assert code == 2
    assert "already holds shards of another dataset (other.000000.tar)" in printed
    assert sorted(p.name for p in (out / "val").iterdir()) == ["other.000000.tar"]


def test_malformed_manifest_in_output_is_refused_not_overwritten(
    seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    manifest = tmp_path / "out" / "val" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{broken")
    code, printed = _run(capsys, "--json", seeds, "--output-dir", tmp_path / "out")
    assert code == 2
    assert "malformed shard manifest" in printed and str(manifest) in printed
    assert manifest.read_text() == "{broken"


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b"{not json", [], "not valid JSON or JSON Lines"),
        (b'{"a": 1}', [], "expected a JSON list"),
        (b'[{"path": "x.png", "caption": "c"}]', [], "no entry has the image key 'image_path'"),
        (b'[{"image_path": "x.png", "text": "c"}]', [], "pass --caption-key"),
        (
            b'[{"image_path": "x.png", "caption": "c"}]',
            ["--split", "test", "--test-fraction", "0.2"],
            "cannot carve test",
        ),
        (b'[{"image_path": "x.png", "caption": "c"}]', ["--test-fraction", "1.5"], "--test-fraction must be"),
    ],
)
def test_unusable_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: bytes, extra: list, message: str
) -> None:
    path = tmp_path / "clip_dataset_train.json"
    path.write_bytes(content)
    code, printed = _run(capsys, "--json", path, "--output-dir", tmp_path / "out", *extra)
    assert code == 2 and message in printed
    assert not (tmp_path / "out" / "train").exists()


def test_split_must_be_known(seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_json(tmp_path / "catalogue.json", json.loads(seeds.read_text()))
    code, printed = _run(capsys, "--json", path, "--output-dir", tmp_path / "out")
    assert code == 2 and "pass --split" in printed
    assert _run(capsys, "--json", path, "--output-dir", tmp_path / "out", "--split", "train")[0] == 0


def test_nothing_usable_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_json(tmp_path / "clip_dataset_train.json", [{"image_path": "gone.png", "caption": "c"}])
    code, printed = _run(capsys, "--json", path, "--output-dir", tmp_path / "out")
    assert code == 1
    assert "missing image file" in printed and "(no shards)" in printed
    assert read_manifest(tmp_path / "out" / "train").num_samples == 0
