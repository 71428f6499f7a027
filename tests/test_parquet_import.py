"""Hugging Face parquet (and `datasets` Arrow) to shards: Marqo's 7 dataset schemas, streaming, bad rows,
untrusted image paths, reruns, and the data presets that train on the result."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from helpers.raw_catalogue import decoded, image_array, metadata, read_split, shard_bytes
from PIL import Image

from fashion_clip.data.batching import keyed_samples, make_composer
from fashion_clip.data.manifest import read_manifest
from fashion_clip.data.shard_spec import count_samples, resolve_shards
from fashion_clip.ingest.sources import parquet
from fashion_clip.ingest.sources.parquet import main

STR, FLOAT = pa.string(), pa.float64()
# each dataset card's columns besides `image` and `item_ID` (huggingface.co/datasets/Marqo/<name>)
CARDS = {
    "atlas": {"gender": STR, "category": STR, "sub-category": STR, "text": STR},
    "deepfashion_inshop": {
        "category1": STR,
        "category2": STR,
        "category3": STR,
        "color": STR,
        "description": STR,
        "text": STR,
    },
    "deepfashion_multimodal": {"category1": STR, "category2": STR, "category3": FLOAT, "text": STR},
    "fashion200k": {"category1": STR, "category2": STR, "category3": STR, "text": STR},
    "imaterialist": {
        "gender": STR,
        "color": STR,
        "material": STR,
        "sleeve": STR,
        "pattern": STR,
        "neckline": STR,
        "style": STR,
        "category": STR,
    },
    "kagl": {
        "gender": STR,
        "category1": STR,
        "category2": STR,
        "category3": STR,
        "baseColour": STR,
        "season": STR,
        "year": FLOAT,
        "usage": STR,
        "text": STR,
    },
    "polyvore": {"category": STR, "text": STR},
}
INT_IDS = ("imaterialist", "kagl")
# the json keys batching and the attributes protocol read, from the columns Marqo's tasks query
KEYS = {
    "atlas": {"category": "category", "subcategory": "sub-category"},
    "deepfashion_inshop": {"category": "category2", "subcategory": "category3"},
    "deepfashion_multimodal": {"category": "category2"},
    "fashion200k": {"category": "category1", "subcategory": "category2"},
    "imaterialist": {"category": "category"},
    "kagl": {"category": "category1", "subcategory": "category2", "colour": "baseColour"},
    "polyvore": {"category": "category"},
}
IMATERIALIST_CAPTION = ("color", "pattern", "material", "neckline", "sleeve", "style", "category")
DROPPED = {"deepfashion_multimodal": ("category3",)}
IMAGE = pa.struct([("bytes", pa.binary()), ("path", STR)])
FIRST_FILE_ROWS = 6
BAD_IMAGE, EMPTY_CAPTION, UNSAFE = (
    "unreadable or truncated image",
    "empty caption",
    "image path outside the dataset folder",
)


def _run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str]:
    code = main([*map(str, argv), "--no-progress"])
    return code, capsys.readouterr().out


def jpeg(seed: int) -> bytes:
    """The JPEG bytes an HF `Image` feature stores, of the test image for `seed`."""
    buffer = io.BytesIO()
    Image.fromarray(image_array(seed)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def cell(column: str, kind: pa.DataType, product: int, view: int) -> object:
    """A value for one column: product-level attributes, a per-view text, a year, an empty float column."""
    if column == "text":
        return f"Item {product} view {view}."
    if kind == FLOAT:
        return 2000.0 + product if column == "year" else None
    return f"{column} {product % 2}"


def card_rows(preset: str, products: int = 4, views: int = 2) -> list[dict]:
    """Rows in the schema (several views per product), then a corrupt image and a missing caption."""
    rows = []
    for p in range(products):
        for k in range(views):
            row = {c: cell(c, kind, p, k) for c, kind in CARDS[preset].items()}
            item = 100 + p if preset in INT_IDS else f"id_{p:05d}"
            rows.append({"image": {"bytes": jpeg(p * 10 + k), "path": None}, "item_ID": item, **row})
    corrupt = {**rows[0], "image": {"bytes": b"\xff\xd8 not a jpeg", "path": "x.jpg"}}
    no_caption = {**rows[1], **{c: None for c in ("text", *IMATERIALIST_CAPTION) if c in CARDS[preset]}}
    return rows + [corrupt, no_caption]


def card_table(preset: str, rows: list[dict]) -> pa.Table:
    """The rows with the card's column types."""
    schema = pa.schema(
        [
            ("image", IMAGE),
            ("item_ID", pa.int64() if preset in INT_IDS else STR),
            *CARDS[preset].items(),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def write_dataset(root: Path, preset: str, rows: list[dict] | None = None) -> list[dict]:
    """A hub download's layout: data/*.parquet in two files of 3-row row groups, plus the card and the
    downloader's hidden cache folder."""
    rows = card_rows(preset) if rows is None else rows
    (root / "data").mkdir(parents=True)
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / ".cache" / "huggingface" / "stale.parquet").write_bytes(b"half a download")
    (root / "README.md").write_text("---\ndataset_info: ...\n---\n")
    for n, chunk in enumerate((rows[:FIRST_FILE_ROWS], rows[FIRST_FILE_ROWS:])):
        pq.write_table(
            card_table(preset, chunk), root / "data" / f"data-{n:05d}-of-00002.parquet", row_group_size=3
        )
    return rows


def closest_seed(jpg: bytes, seeds: range) -> int:
    """The test image a stored JPEG shows: the one it differs least from, so a row's image is never
    taken for another row's."""
    stored = np.asarray(decoded(jpg), dtype=int)
    return min(seeds, key=lambda seed: np.abs(stored - image_array(seed)).mean())


def row_name(index: int) -> str:
    """How a row of `write_dataset` is named in the manifest: its file and its row there."""
    file, row = divmod(index, FIRST_FILE_ROWS)
    return f"data/data-{file:05d}-of-00002.parquet:{row}"


def expected_caption(preset: str, row: dict) -> str:
    """The text column, or for iMaterialist (no text) its attribute values joined."""
    return " ".join(row[c] for c in IMATERIALIST_CAPTION) if preset == "imaterialist" else row["text"]


@pytest.mark.parametrize("preset", sorted(CARDS))
def test_each_marqo_schema_imports_with_its_metadata(
    preset: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = write_dataset(tmp_path / preset, preset)
    out = tmp_path / "out"
    code, printed = _run(
        capsys, "--parquet", tmp_path / preset, "--preset", preset, "--output-dir", out, "--split", "test"
    )
    assert code == 0
    manifest = read_manifest(out / "test")
    assert manifest.dataset == preset and manifest.num_samples == 8
    assert [(r["item"], r["reason"]) for r in manifest.skipped] == [
        (row_name(8), BAD_IMAGE),
        (row_name(9), EMPTY_CAPTION),
    ]
    assert BAD_IMAGE in printed and f"category <- {KEYS[preset]['category']}" in printed
    samples = read_split(out / "test")
    assert list(samples) == [f"{i:09d}" for i in range(8)]
    kept = [c for c in CARDS[preset] if c != "text" and c not in DROPPED.get(preset, ())]
    for i, (row, sample) in enumerate(zip(rows, samples.values(), strict=False)):
        meta = json.loads(sample["json"])
        assert set(meta) == {"product_id", "category", "captions", "image_name", *KEYS[preset], *kept}
        assert meta["product_id"] == str(row["item_ID"]) and meta["image_name"] == row_name(i)
        assert {key: meta[key] for key in KEYS[preset]} == {k: row[c] for k, c in KEYS[preset].items()}
        assert {c: meta[c] for c in kept} == {c: row[c] for c in kept}
        assert sample["txt"].decode() == expected_caption(preset, row) == meta["captions"][0]
        assert closest_seed(sample["jpg"], range(40)) == (i // 2) * 10 + i % 2


def test_row_groups_are_streamed_a_batch_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset(tmp_path / "kagl", "kagl")
    monkeypatch.setattr(parquet, "BATCH_ROWS", 2)
    for whole in ("read", "read_row_groups"):
        monkeypatch.setattr(pq.ParquetFile, whole, lambda *a, **k: pytest.fail("read a whole file"))
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("read a whole table"))
    batches: list[int] = []
    original = pq.ParquetFile.iter_batches

    def counted(self: pq.ParquetFile, **kwargs: object):
        for batch in original(self, **kwargs):
            batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counted)
    files = parquet.part_files(tmp_path / "kagl")
    source = parquet.ParquetSource(
        [parquet.open_part(p, label) for p, label in files], parquet.PRESETS["kagl"], tmp_path / "kagl"
    )
    assert [label for _, label in files] == [row_name(0).split(":")[0], row_name(6).split(":")[0]]
    assert source.rows == 10
    entries = source.entries()
    assert next(entries).index == 0 and batches == [2]  # one batch read, not the file
    assert [e.index for e in entries] == list(range(1, 10))
    assert max(batches) == 2 and sum(batches) == 10


def peak_arrow_bytes(root: Path, rows: int) -> int:
    """The most Arrow memory held while every row of a file of `rows` 40 kB images is read."""
    blob = np.random.default_rng(0).bytes(40_000)
    columns = {"image": [blob] * rows, "text": ["t"] * rows, "item_ID": list(range(rows))}
    pq.write_table(pa.table(columns), root / "data.parquet", row_group_size=10)
    source = parquet.ParquetSource(
        [parquet.open_part(root / "data.parquet", "data")], parquet.Columns(), root
    )
    before = peak = pa.total_allocated_bytes()
    for _ in source.entries():
        peak = max(peak, pa.total_allocated_bytes())
    return peak - before


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    (tmp_path / "large").mkdir()
    small, large = peak_arrow_bytes(tmp_path / "small", 200), peak_arrow_bytes(tmp_path / "large", 800)
    assert large < 1.5 * small < 4 * 10 * 40_000  # a row group or two held, whatever the file's size


def test_image_paths_are_taken_only_inside_the_dataset_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "dataset"
    (root / "images").mkdir(parents=True)
    (root / "images" / "ok.jpg").write_bytes(jpeg(1))
    (tmp_path / "outside.jpg").write_bytes(jpeg(2))
    (root / "images" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    paths = [
        "images/ok.jpg",
        "../outside.jpg",
        str(tmp_path / "outside.jpg"),
        "https://example.com/a.jpg",
        "images/link.jpg",
        "images/missing.jpg",
        "images/../../outside.jpg",
    ]
    rows = [
        {"image": {"bytes": None, "path": p}, "text": f"row {i}", "item_ID": str(i)}
        for i, p in enumerate(paths)
    ]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("image", IMAGE), ("text", STR), ("item_ID", STR)]))
    pq.write_table(table, root / "train-00000-of-00001.parquet")
    code, _ = _run(capsys, "--parquet", root, "--output-dir", tmp_path / "out")
    assert code == 0
    manifest = read_manifest(tmp_path / "out" / "train")  # the split is read from the file names
    assert manifest.num_samples == 1
    assert [r["reason"] for r in manifest.skipped] == [UNSAFE] * 4 + ["missing image file", UNSAFE]
    assert "leads out of" in manifest.skipped[3]["detail"] and "is absolute" in manifest.skipped[1]["detail"]
    (stored,) = read_split(tmp_path / "out" / "train").values()
    assert closest_seed(stored["jpg"], range(3)) == 1


def test_interrupted_import_resumes_on_any_worker_count_and_reruns_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dataset(tmp_path / "kagl", "kagl")
    args = ["--parquet", tmp_path / "kagl", "--preset", "kagl", "--split", "train", "--shard-size", 2]
    assert _run(capsys, *args, "--output-dir", tmp_path / "clean")[0] == 0
    reference = shard_bytes(tmp_path / "clean" / "train")

    real = parquet.row_entry

    def interrupted(index: int, *rest: object) -> object:
        if index == 5:
            raise KeyboardInterrupt
        return real(index, *rest)

    monkeypatch.setattr(parquet, "row_entry", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(capsys, *args, "--output-dir", tmp_path / "out")
    monkeypatch.setattr(parquet, "row_entry", real)
    code, printed = _run(capsys, *args, "--output-dir", tmp_path / "out", "--workers", 2)
    assert code == 0 and "resumed 2 shards" in printed  # and encoded on two processes, to the same bytes
    assert shard_bytes(tmp_path / "out" / "train") == reference
    assert read_manifest(tmp_path / "out" / "train") == read_manifest(tmp_path / "clean" / "train")

    code, printed = _run(capsys, *args, "--output-dir", tmp_path / "out")
    assert code == 0 and "resumed" not in printed
    code, printed = _run(capsys, *args, "--output-dir", tmp_path / "out", "--caption-column", "category3")
    assert code == 2 and "columns" in printed and "--overwrite" in printed
    assert shard_bytes(tmp_path / "out" / "train") == reference


def test_column_options_override_the_preset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = write_dataset(tmp_path / "kagl", "kagl")
    options = ["--caption-column", "category3, baseColour", "--category-column", "category3"]
    code, _ = _run(
        capsys,
        "--parquet",
        tmp_path / "kagl",
        "--preset",
        "KAGL",
        *options,
        "--metadata-columns",
        "season",
        "--output-dir",
        tmp_path / "out",
        "--split",
        "val",
        "--dataset-name",
        "mine",
    )
    assert code == 0
    assert read_manifest(tmp_path / "out" / "val").dataset == "mine"
    meta = metadata(tmp_path / "out" / "val")
    imported = [row for i, row in enumerate(rows) if i != 8]  # the corrupt image; the row without text
    assert len(meta) == len(imported)  # is captioned from other columns now
    for row, m in zip(imported, meta, strict=True):
        assert m["captions"] == [f"{row['category3']} {row['baseColour']}"]
        assert (m["category"], m["subcategory"], m["season"]) == (
            row["category3"],
            row["category2"],
            row["season"],
        )
        assert "usage" not in m and "gender" not in m


def test_datasets_cache_arrow_files_read_like_the_hub_parquet(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = write_dataset(tmp_path / "hub", "polyvore")
    cache = tmp_path / "cache" / "marqo___polyvore" / "default" / "0.0.0" / "abc123"
    cache.mkdir(parents=True)
    table = card_table("polyvore", rows)
    with pa.ipc.new_stream(str(cache / "polyvore-data-00000-of-00001.arrow"), table.schema) as writer:
        for batch in table.to_batches(max_chunksize=3):
            writer.write_batch(batch)
    (cache / "cache-0123456789abcdef.arrow").write_bytes(b"a .map() result, never read")
    (cache / "dataset_info.json").write_text("{}")
    for name, source in (("hub", tmp_path / "hub"), ("cache", tmp_path / "cache")):
        args = [
            "--parquet",
            source,
            "--preset",
            "polyvore",
            "--output-dir",
            tmp_path / name,
            "--split",
            "train",
        ]
        assert _run(capsys, *args)[0] == 0
    hub, cache_split = (read_split(tmp_path / name / "train") for name in ("hub", "cache"))
    assert [s["jpg"] for s in cache_split.values()] == [s["jpg"] for s in hub.values()]
    strip = [
        {k: v for k, v in m.items() if k != "image_name"} for m in metadata(tmp_path / "cache" / "train")
    ]
    assert strip == [
        {k: v for k, v in m.items() if k != "image_name"} for m in metadata(tmp_path / "hub" / "train")
    ]
    skipped = read_manifest(tmp_path / "cache" / "train").skipped
    assert [r["item"] for r in skipped] == [
        f"marqo___polyvore/default/0.0.0/abc123/polyvore-data-00000-of-00001.arrow:{i}" for i in (8, 9)
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "pass --split"),
        (["--split", "train", "--id-column", "sku"], "no column 'sku'"),
        (["--split", "train", "--image-column", "year"], "not images"),
        (["--split", "train", "--metadata-columns", "product_id"], "already has fields"),
        (["--split", "train", "--metadata-columns", "category", "--category-column", "text"], "already has"),
    ],
)
def test_unusable_choices_exit_2_naming_what_to_change(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list, message: str
) -> None:
    write_dataset(tmp_path / "kagl", "kagl")
    code, printed = _run(capsys, "--parquet", tmp_path / "kagl", "--output-dir", tmp_path / "out", *extra)
    assert code == 2 and message in printed
    assert not (tmp_path / "out" / "train").exists()


def test_unknown_preset_lists_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--parquet", str(tmp_path), "--preset", "deepfashion"])
    assert "invalid choice: 'deepfashion'" in capsys.readouterr().err


def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "pointer.parquet").write_text("version https://git-lfs.github.com/spec/v1\n")
    write_dataset(tmp_path / "cut", "polyvore")
    part = tmp_path / "cut" / "data" / "data-00000-of-00002.parquet"
    data = bytearray(part.read_bytes())
    data[200:4000] = bytes(3800)  # pages zeroed inside an intact file, as a bad disk or copy leaves them
    part.write_bytes(bytes(data))
    cases = {
        "empty": "no .parquet or .arrow files",
        "pointer.parquet": "not a readable parquet file",
        "gone": "no such file or folder",
        "cut": "unreadable part",
    }
    for name, message in cases.items():
        code, printed = _run(
            capsys, "--parquet", tmp_path / name, "--output-dir", tmp_path / "out", "--split", "train"
        )
        assert code == 2 and message in printed, name


def test_marqo_data_preset_trains_on_the_import(
    compose_train, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_dataset(tmp_path / "hub", "deepfashion_inshop")
    data_dir = tmp_path / "data"
    argv = [
        "--parquet",
        tmp_path / "hub",
        "--preset",
        "deepfashion-inshop",
        "--output-dir",
        data_dir / "marqo" / "deepfashion_inshop",
    ]
    assert _run(capsys, *argv, "--split", "train", "--test-fraction", "0.15")[0] == 0
    cfg = compose_train("data=marqo_deepfashion_inshop", data_dir=data_dir)
    assert cfg.data.name == "deepfashion_inshop" and cfg.data.val == cfg.data.test
    assert count_samples(cfg.data.train) + count_samples(cfg.data.test) == 8
    train, test = ({m["product_id"] for m in metadata(Path(cfg.data[s]))} for s in ("train", "test"))
    assert train and test and not train & test
    keyed = list(keyed_samples(wds.WebDataset(resolve_shards(cfg.data.train), shardshuffle=False)))
    assert all(k.category for k in keyed) and len({k.product for k in keyed}) < len(keyed)
    unique = list(make_composer("product_unique", 2, None)(keyed, 2, random.Random(0)))
    assert unique and all(len({k.product for k in batch}) == 2 for batch in unique)
