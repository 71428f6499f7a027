"""Product search cost: index build rate, index size on disk, and text-query latency on a 10k-row index.

Run: .venv/bin/python benchmarks/search_latency.py --products 2000 --rows 10000 --queries 50
The catalogue is the synthetic demo renderer (2-3 views per product, built once under --work-dir; it
has at most 2520 products), indexed with a random-init FashionCLIP-Tiny, so the numbers measure cost,
not retrieval quality. The index is then tiled to --rows rows (each copy a new set of products, rows
jittered so there are no ties) for the latency run. A query is timed end to end (tokenize + text
encoder + exact top-k products) as the sum of its two parts, each timed in its own loop so
one part's thread pool does not slow the other.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from fashion_clip.demo.catalogue import catalogue_is_complete, generate_demo_catalogue
from fashion_clip.models.factory import create_clip
from fashion_clip.models.identity import clip_config, identify
from fashion_clip.retrieval.index_file import IndexData, build_index, open_catalogue, save_index
from fashion_clip.retrieval.search import TorchSearcher, encode_text_query, search
from fashion_clip.utils.files import atomic_output

MODEL = "FashionCLIP-Tiny"


def catalogue(work_dir: Path, products: int, image_size: int) -> Path:
    """The benchmark catalogue's shard directory, generated once and reused while complete."""
    root = work_dir / "catalogue"
    counts = {"test": products}
    if not catalogue_is_complete(root, counts, image_size):
        generate_demo_catalogue(root, counts, image_size=image_size, shard_size=1000, progress=True)
    return root / "test"


def tiled(index: IndexData, rows: int, jitter: float = 0.05) -> IndexData:
    """The index repeated up to `rows` rows, each copy as new products with jittered unit-norm rows."""
    copies = math.ceil(rows / len(index))
    generator = torch.Generator().manual_seed(0)
    embeddings = index.embeddings.float().repeat(copies, 1)[:rows]
    embeddings += jitter * torch.randn(embeddings.shape, generator=generator) / math.sqrt(embeddings.shape[1])
    records = [replace(r, product_id=f"{r.product_id}/{c}") for c in range(copies) for r in index.records]
    return IndexData(
        torch.nn.functional.normalize(embeddings, dim=1).half(), records[:rows], index.model, index.catalogue
    )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), enough for 50 samples."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(args: argparse.Namespace) -> dict[str, float | int | str]:
    """Build the index, save it, then time `--queries` distinct caption queries one by one."""
    split = catalogue(args.work_dir, args.products, args.image_size)
    torch.manual_seed(0)
    bundle = create_clip(MODEL)
    identity = identify(bundle.model, clip_config(MODEL), None)
    start = time.perf_counter()
    index = build_index(
        bundle, open_catalogue(str(split), bundle.val_transform), identity, str(split), 256, args.num_workers
    )
    build_s = time.perf_counter() - start
    built = save_index(index, args.work_dir / "index.pt", overwrite=True)
    texts = list(dict.fromkeys(r.caption for r in index.records))[: args.queries]
    large = tiled(index, args.rows)
    path = save_index(large, args.work_dir / "index_tiled.pt", overwrite=True)
    searcher = TorchSearcher(large.embeddings)
    search(large, encode_text_query(bundle, texts[0]), args.k, searcher)  # warm-up, not timed
    queries, encode_ms = [], []
    for text in texts:
        start = time.perf_counter()
        queries.append(encode_text_query(bundle, text))
        encode_ms.append((time.perf_counter() - start) * 1e3)
    search_ms = []
    for query in queries:
        start = time.perf_counter()
        search(large, query, args.k, searcher)
        search_ms.append((time.perf_counter() - start) * 1e3)
    total_ms = [a + b for a, b in zip(encode_ms, search_ms, strict=True)]
    return {
        "model": MODEL,
        "embed_dim": index.embeddings.shape[1],
        "torch_threads": torch.get_num_threads(),
        "built_images": len(index),
        "built_products": index.num_products,
        "build_s": round(build_s, 2),
        "build_images_per_s": round(len(index) / build_s, 1),
        "built_index_mb": round(built.stat().st_size / 1e6, 2),
        "search_rows": len(large),
        "search_products": large.num_products,
        "search_index_mb": round(path.stat().st_size / 1e6, 2),
        "queries": len(texts),
        "k": args.k,
        "query_ms_median": round(statistics.median(total_ms), 2),
        "query_ms_p95": round(percentile(total_ms, 95), 2),
        "text_encode_ms_median": round(statistics.median(encode_ms), 2),
        "topk_ms_median": round(statistics.median(search_ms), 2),
        "topk_ms_p95": round(percentile(search_ms, 95), 2),
    }


def write_results(results: dict[str, float | int | str], out_dir: Path) -> None:
    """Print the figures and save them as search_latency.{json,md} (temp name, then rename)."""
    table = Table(title="Product search: index build and query latency (CPU)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, str(value))
    Console().print(table)
    markdown = "| measure | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in results.items())
    for name, text in (
        ("search_latency.json", json.dumps(results, indent=2)),
        ("search_latency.md", markdown),
    ):
        with atomic_output(out_dir / name) as tmp:
            tmp.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, measure, report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--products", type=int, default=2000, help="2000 products = about 5k images")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the index searched")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/fashion-clip-bench-search"))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args(argv)
    write_results(measure(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
