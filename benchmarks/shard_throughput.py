"""Shard-writing throughput (images/s per worker count) and shard/source size ratio on a PNG fixture.

Run: .venv/bin/python benchmarks/shard_throughput.py --images 2000 --size 256 --workers 1 2
The fixture is demo-catalogue renders saved as PNG (Fashion-Gen's raw format and size), built once.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from fashion_clip.data.manifest import read_manifest
from fashion_clip.demo.products import plan_products
from fashion_clip.demo.rendering import render_views
from fashion_clip.ingest.sources.json_mapping import main as write_shards


def build_fixture(root: Path, images: int, size: int) -> Path:
    """PNG files plus a seed-style JSON mapping; reused when already there with enough images."""
    mapping = root / "clip_dataset_train.json"
    if mapping.is_file() and len(json.loads(mapping.read_text())) >= images:
        return mapping
    (root / "images").mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for product in plan_products({"train": images})["train"]:
        for k, view in enumerate(render_views(product, size)):
            name = f"{product.product_id}_{k}.png"
            view.save(root / "images" / name)
            records.append(
                {
                    "image_path": f"images/{name}",
                    "image_name": name,
                    "caption": product.captions[0],
                    "category": product.category,
                    "product_id": product.product_id,
                }
            )
        if len(records) >= images:
            break
    mapping.write_text(json.dumps(records[:images]))
    return mapping


def measure(mapping: Path, out: Path, workers: int) -> tuple[float, int, int]:
    """Seconds, samples and shard bytes for one full write."""
    start = time.perf_counter()
    code = write_shards(
        ["--json", str(mapping), "--output-dir", str(out), "--workers", str(workers), "--no-progress"]
    )
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"shard writer exited {code}")
    manifest = read_manifest(out / "train")
    return (
        seconds,
        manifest.num_samples,
        sum((out / "train" / s.name).stat().st_size for s in manifest.shards),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Build the fixture, time each worker count on a fresh output, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/fashion-clip-bench"))
    args = parser.parse_args(argv)
    mapping = build_fixture(args.work_dir / "raw", args.images, args.size)
    source = sum(p.stat().st_size for p in (args.work_dir / "raw" / "images").glob("*.png"))
    rows = []
    for workers in args.workers:
        seconds, samples, shard_bytes = measure(mapping, args.work_dir / f"out-{workers}", workers)
        rows.append(
            f"workers={workers}: {samples} images in {seconds:.1f}s = {samples / seconds:.0f} images/s"
        )
    print(*rows, sep="\n")
    print(
        f"source PNG bytes {source}, shard bytes {shard_bytes}, shard/source ratio {shard_bytes / source:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
