"""Fashion-Gen's official HDF5 streamed to shards: fixed-length byte strings, legacy encodings, blocks."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.raw_catalogue import image_array, metadata, read_split

from fashion_clip.data.manifest import read_manifest
from fashion_clip.ingest.sources import h5

ROWS = 23


def _h5(path: Path, descriptions: list[bytes], chunk_rows: int = 4) -> Path:
    """A file shaped like fashiongen_256_256_*.h5 (N x 1 byte-string cells), at 40 x 32 pixels."""
    n = len(descriptions)
    with h5py.File(path, "w") as f:
        images = np.stack([image_array(i) for i in range(n)])
        f.create_dataset(
            "input_image", data=images, chunks=(chunk_rows, *images.shape[1:]), compression="gzip"
        )
        f.create_dataset("input_description", data=np.array(descriptions, dtype="S64")[:, None])
        f.create_dataset("input_category", data=np.array([b"SHIRTS"] * n, dtype="S16")[:, None])
        f.create_dataset("input_productID", data=np.array([100 + i // 2 for i in range(n)])[:, None])
        f.create_dataset(
            "input_pose", data=np.array([f"id_gridfs_{i % 2}".encode() for i in range(n)])[:, None]
        )
    return path


def _descriptions() -> list[bytes]:
    texts = [f"Shirt {i} in blue.".encode() for i in range(ROWS)]
    texts[3] = b"Caf\xe9 cr\xe8me shirt \x93soft\x94."
    texts[5] = b"   "
    return texts


def _run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str]:
    code = h5.main([*map(str, argv), "--no-progress"])
    return code, capsys.readouterr().out


def test_rows_stream_into_shards(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _h5(tmp_path / "fashiongen_256_256_train.h5", _descriptions())
    code, printed = _run(
        capsys,
        "--h5",
        path,
        "--output-dir",
        tmp_path / "out",
        "--shard-size",
        8,
        "--dataset-name",
        "fashiongen",
    )
    assert code == 0
    manifest = read_manifest(tmp_path / "out" / "train")
    assert manifest.pattern == "fashiongen.{000000..000002}.tar"
    assert manifest.num_samples == ROWS - 1
    assert [(s["index"], s["item"], s["reason"]) for s in manifest.skipped] == [
        (5, "102_id_gridfs_1", "empty caption")
    ]
    samples = read_split(tmp_path / "out" / "train")
    assert samples["000000003"]["txt"].decode() == "Café crème shirt “soft”."
    meta = metadata(tmp_path / "out" / "train")
    assert meta[0] == {
        "product_id": "100",
        "category": "SHIRTS",
        "captions": ["Shirt 0 in blue."],
        "image_name": "100_id_gridfs_0",
    }
    assert "1 rows had text not valid UTF-8; decoded as windows-1252" in printed


def test_block_reads_never_load_the_whole_image_array(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _h5(tmp_path / "fashiongen_256_256_train.h5", _descriptions(), chunk_rows=3)
    monkeypatch.setattr(h5, "BLOCK_ROWS", 5)
    source = h5.FashionGenH5(path, "input_description")
    assert source.block == 3
    reads: list[int] = []
    original = source._block
    monkeypatch.setattr(source, "_block", lambda f, a, b: reads.append(b - a) or original(f, a, b))
    assert len(list(source.entries())) == ROWS
    assert max(reads) == 3 and sum(reads) == ROWS


def test_validation_file_carves_a_test_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _h5(tmp_path / "fashiongen_256_256_validation.h5", _descriptions())
    code, printed = _run(capsys, "--h5", path, "--output-dir", tmp_path / "out", "--test-fraction", 0.5)
    assert code == 0 and printed.count("1 rows had text") == 1
    val, test = ({m["product_id"] for m in metadata(tmp_path / "out" / s)} for s in ("val", "test"))
    assert val and test and not val & test and len(val | test) == 12


@pytest.mark.parametrize("broken", ["not_h5", "no_description", "flat_images"])
def test_unusable_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, broken: str) -> None:
    path = tmp_path / "fashiongen_256_256_train.h5"
    if broken == "not_h5":
        path.write_bytes(b"this is not hdf5")
    else:
        with h5py.File(path, "w") as f:
            f.create_dataset(
                "input_image", data=np.zeros((2, 4, 4, 3) if broken == "no_description" else (2, 48))
            )
            if broken == "flat_images":
                f.create_dataset("input_description", data=np.array([[b"a"], [b"b"]]))
    code, printed = _run(capsys, "--h5", path, "--output-dir", tmp_path / "out")
    assert code == 2 and "error" in printed
