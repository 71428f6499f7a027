"""ONNX export on onnxruntime against the torch model: embedding parity, recall, and text-query latency.

Run: .venv/bin/python benchmarks/onnx_latency.py --ckpt outputs/demo/runs/<run>/checkpoints/best-*.ckpt
(default model FashionCLIP-Tiny; `--model ViT-B-32` without --ckpt measures a random-init ViT-B/32's cost).
It exports the model to ONNX (and an int8 copy made by onnxruntime's dynamic quantization), embeds the
--source split with all three (torch on the PyTorch eval transform, ONNX on the PIL + numpy one) and scores
each with the `full` protocol; then it times text queries end to end (tokenize + text encoder + exact
top-k products) on the torch-built index tiled to --rows rows. Backends alternate query by query, so load
from other processes hits them alike; each has --threads intra-op threads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from machine import load_average, machine
from onnxruntime.quantization import QuantType, quantize_dynamic
from rich.console import Console
from rich.table import Table
from search_latency import percentile, tiled

from fashion_clip.deploy.export import export_onnx_directory
from fashion_clip.deploy.export_files import encoder_file
from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.deploy.onnx_bundle import onnx_bundle
from fashion_clip.evaluation.full import full_protocol
from fashion_clip.models.factory import ClipBundle, create_clip
from fashion_clip.models.identity import clip_config, identify
from fashion_clip.retrieval.embedding import embed_catalogue
from fashion_clip.retrieval.index_file import build_index, open_catalogue
from fashion_clip.retrieval.search import TorchSearcher, encode_text_query, search
from fashion_clip.utils.files import atomic_output


def torch_model(name: str, ckpt: Path | None, work_dir: Path) -> tuple[ClipBundle, Path]:
    """The torch bundle and a weights file to export (random-init weights are saved first)."""
    if ckpt is None:
        torch.manual_seed(0)
        ckpt = work_dir / "weights.pt"
        torch.save(create_clip(name).model.state_dict(), ckpt)
    bundle = load_clip(clip_config(name), ckpt, source="the benchmark's --model").bundle
    bundle.model.eval()
    return bundle, ckpt


def int8_copy(export: Path, out: Path) -> Path:
    """The export with both encoders quantized by onnxruntime (int8 weights, dynamic activations)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(export, out)
    for tower in ("image", "text"):
        quantize_dynamic(export / encoder_file(tower), out / encoder_file(tower), weight_type=QuantType.QInt8)
    return out


def quality(bundles: dict[str, ClipBundle], source: str) -> dict[str, dict[str, float]]:
    """Per backend: largest embedding difference from torch, top-10 agreement and `full` mean recall."""
    embedded = {
        name: embed_catalogue(b.model, b.tokenizer, open_catalogue(source, b.val_transform), 64, 0)
        for name, b in bundles.items()
    }
    ref = embedded["torch"]
    ref_top = (ref.caption_features @ ref.image_features.T).topk(10).indices
    rows = {}
    for name, split in embedded.items():
        top = (split.caption_features @ split.image_features.T).topk(10).indices
        rows[name] = {
            "max_abs_diff_image": float((split.image_features - ref.image_features).abs().max()),
            "max_abs_diff_text": float((split.caption_features - ref.caption_features).abs().max()),
            "top10_identical_queries": float((top == ref_top).all(dim=1).float().mean()),
            "mean_recall": full_protocol(split, by_category=False)["mean_recall"],
        }
    return rows


def timed(call: Callable[[], object]) -> tuple[object, float]:
    """What one call returns and the milliseconds it took."""
    start = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - start) * 1e3


def latency(bundles: dict[str, ClipBundle], index, texts: list[str], k: int) -> dict[str, dict[str, float]]:
    """Median and p95 query time (text encoding + top-k) per backend, interleaved query by query."""
    searcher = TorchSearcher(index.embeddings)
    for bundle in bundles.values():  # warm-up: first calls allocate
        search(index, encode_text_query(bundle, texts[0]), k, searcher)
    encode: dict[str, list[float]] = {name: [] for name in bundles}
    total: dict[str, list[float]] = {name: [] for name in bundles}
    for text in texts:
        for name, bundle in bundles.items():
            query, encode_ms = timed(lambda b=bundle, t=text: encode_text_query(b, t))
            _, search_ms = timed(lambda q=query: search(index, q, k, searcher))
            encode[name].append(encode_ms)
            total[name].append(encode_ms + search_ms)
    return {
        name: {
            "text_encode_ms_median": statistics.median(encode[name]),
            "query_ms_median": statistics.median(total[name]),
            "query_ms_p95": percentile(total[name], 95),
        }
        for name in bundles
    }


def measure(args: argparse.Namespace) -> dict:
    """Export, quantize, compare quality, time queries."""
    torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    bundle, ckpt = torch_model(args.model, args.ckpt, args.work_dir)
    start = time.perf_counter()
    export = export_onnx_directory(args.model, ckpt, args.work_dir / "onnx", overwrite=True)
    export_s = time.perf_counter() - start
    int8 = int8_copy(export, args.work_dir / "onnx_int8")
    bundles = {
        "torch": bundle,
        "onnx": onnx_bundle(export, args.threads),
        "onnx_int8": onnx_bundle(int8, args.threads),
    }
    rows = quality(bundles, args.source)
    identity = identify(bundle.model, clip_config(args.model), str(ckpt))
    index = build_index(
        bundle, open_catalogue(args.source, bundle.val_transform), identity, args.source, 64, 0
    )
    texts = list(dict.fromkeys(r.caption for r in index.records))[: args.queries]
    timings = latency(bundles, tiled(index, args.rows), texts, args.k)
    for name in rows:
        rows[name] |= timings[name]
        rows[name]["speedup_vs_torch"] = (
            timings["torch"]["query_ms_median"] / timings[name]["query_ms_median"]
        )
    sizes = {
        name: sum((d / encoder_file(t)).stat().st_size for t in ("image", "text")) / 1e6
        for name, d in (("onnx", export), ("onnx_int8", int8))
    }
    return {
        "model": args.model,
        "ckpt": str(args.ckpt) if args.ckpt else "random init",
        "source": args.source,
        "rows": args.rows,
        "queries": len(texts),
        "threads": args.threads,
        "export_s": round(export_s, 1),
        "encoder_mb": {name: round(mb, 1) for name, mb in sizes.items()},
        "machine": machine(),
        "load_average": load_average(),
        "backends": rows,
    }


def write_results(results: dict, out_dir: Path) -> None:
    """Print the table (a column per backend) and save onnx_latency.{json,md} (temp name, then rename)."""
    backends = results["backends"]
    measures = list(next(iter(backends.values())))
    title = (
        f"{results['model']} ({results['ckpt']}) on {results['source']}: {results['queries']} text queries, "
        f"{results['rows']} index rows, {results['threads']} threads, load {results['load_average']}"
    )
    table = Table(title=title)
    table.add_column("measure")
    for name in backends:
        table.add_column(name, justify="right")
    lines = ["| measure | " + " | ".join(backends) + " |", "|---" * (len(backends) + 1) + "|"]
    for measure_name in measures:
        cells = [f"{row[measure_name]:.3g}" for row in backends.values()]
        table.add_row(measure_name, *cells)
        lines.append(f"| {measure_name} | " + " | ".join(cells) + " |")
    Console().print(table)
    Console().print(f"export {results['export_s']} s, encoder files (MB): {results['encoder_mb']}")
    for name, text in (
        ("onnx_latency.json", json.dumps(results, indent=2)),
        ("onnx_latency.md", f"{title}\n\n" + "\n".join(lines) + "\n"),
    ):
        with atomic_output(out_dir / name) as tmp:
            tmp.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, measure, report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="FashionCLIP-Tiny", help="open_clip model name")
    parser.add_argument("--ckpt", type=Path, help="trained weights (default: random init)")
    parser.add_argument("--source", default="data/demo/test", help="split embedded for parity and the index")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the (tiled) index searched")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/fashion-clip-bench-onnx"))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args(argv)
    write_results(measure(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
