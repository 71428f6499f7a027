"""WebDataset samples made in the test and written as a split (tars + manifest) by the real shard writer."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from fashion_clip.ingest.shard_writer import ShardSink


def jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    """A small one-colour JPEG: a valid image whose colour can tell samples apart."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def shard_sample(
    index: int, jpg: bytes, product: str, category: str = "dress", captions: list[str] | None = None
) -> dict:
    """One sample as the importers store it: image, first caption and metadata (captions name the product)."""
    captions = captions or [f"{category} {product}"]
    meta = {"product_id": product, "category": category, "captions": captions}
    return {
        "__key__": f"{index:09d}",
        "jpg": jpg,
        "txt": captions[0].encode(),
        "json": json.dumps(meta).encode(),
    }


def write_split(directory: Path, samples: list[dict], shard_size: int, name: str = "fixture") -> Path:
    """`samples` in shards of `shard_size` with the manifest, as training and evaluation read a split."""
    with ShardSink(directory, name, shard_size=shard_size) as sink:
        for sample in samples:
            sink.write(sample)
    return directory
