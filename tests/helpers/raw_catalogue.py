"""Builders for the raw layouts the importers read, written into a test's tmp_path."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from fashion_clip.data.manifest import read_manifest
from fashion_clip.data.shard_spec import resolve_shards


def image_array(seed: int, size: tuple[int, int] = (40, 32)) -> np.ndarray:
    """A small smooth image unique to `seed` (smooth, so JPEG sizes resemble photos more than noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[0], 0 : size[1]]
    base = rng.integers(0, 256, 3)
    return ((base + 3 * x[..., None] + 2 * y[..., None] * rng.integers(1, 4, 3)) % 256).astype(np.uint8)


def write_png(path: Path, seed: int) -> Path:
    """A PNG image file, as Fashion-Gen's extracted folders hold."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_array(seed)).save(path)
    return path


def truncate(path: Path) -> Path:
    """Cut a file short the way an interrupted download does."""
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path


def fashiongen_raw(root: Path, split: str, products: int, views: int = 2) -> list[str]:
    """Python-2-style pickles (byte strings) + PNGs in Fashion-Gen's raw layout; returns image names."""
    names = []
    for p in range(products):
        for k in range(views):
            name = f"{1000 + p}_{k}.png"
            write_png(root / f"extracted_{split}_images" / name, seed=p * 10 + k)
            info = {
                b"img_name": name.encode(),
                b"captions": f"Black wool coat number {p}.".encode(),
                b"super_cls_name": b"JACKETS & COATS",
                b"product_id": str(1000 + p).encode(),
            }
            write_pickle(root / f"full_{split}_info_PAI" / f"{1000 + p}_{k}.pkl", info)
            names.append(name)
    return names


def write_pickle(path: Path, payload: object) -> Path:
    """Pickle with protocol 2, the newest one Python 2 (and hence the raw download) could write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def mapping(root: Path, products: int, views: int = 2) -> list[dict]:
    """Seed-style JSON records with PNGs under `root/images`."""
    records = []
    for p in range(products):
        for k in range(views):
            image = write_png(root / "images" / f"{p}_{k}.png", seed=100 + p * 10 + k)
            records.append(
                {
                    "image_path": str(image.relative_to(root)),
                    "image_name": image.name,
                    "caption": f"Red cotton shirt {p}.",
                    "category": "SHIRTS",
                    "product_id": f"p{p}",
                }
            )
    return records


def write_json(path: Path, records: list) -> Path:
    """A JSON list file."""
    path.write_text(json.dumps(records))
    return path


def read_split(split_dir: Path) -> dict[str, dict[str, bytes]]:
    """key -> {ext: bytes} for every sample, read as training reads a split (manifest, then WebDataset)."""
    dataset = wds.WebDataset(resolve_shards(str(split_dir)), shardshuffle=False, empty_check=False)
    return {s["__key__"]: {k: v for k, v in s.items() if not k.startswith("__")} for s in dataset}


def metadata(split_dir: Path) -> list[dict]:
    """The decoded `.json` member of every sample in a split."""
    return [json.loads(s["json"]) for s in read_split(split_dir).values()]


def decoded(jpeg: bytes) -> Image.Image:
    """Open a stored image to check its format and mode."""
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image


def shard_bytes(split_dir: Path) -> dict[str, bytes]:
    """Every shard of a split by name, to compare two runs byte for byte."""
    return {s.name: (split_dir / s.name).read_bytes() for s in read_manifest(split_dir).shards}
