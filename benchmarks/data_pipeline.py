"""`make bench-data`: the data pipelines alone, in samples/s per CPU core, ours against open_clip_train's.

Run: .venv/bin/python benchmarks/data_pipeline.py [--openclip-python .venv-openclip/bin/python]
Per core: every loader has ONE data worker process (torch threads 1 there, as DataLoader sets) that reads,
decodes, augments, tokenizes and collates; the main process only receives the batches. Each pipeline
variant reads the same shards at the same batch size: open_clip_train's own `get_wds_dataset` loader
(openclip_pipeline_runner.py, in its own virtualenv), our float pipeline (today's), uint8 batches, and
uint8 batches with reduced-scale JPEG decode (data/image_pipeline.py); evaluation has no draft variant.
Two sources: 256 px demo-catalogue JPEGs and 1200x1600 "catalogue photos". Every round runs every
variant once, in an order rotated each round, so drift on a shared machine hits all of them alike; the
table gives each variant's median over the rounds, its min-max, its ratio to open_clip_train's median,
and the median and min-max of the per-round ratios (the steadier figure when the machine's speed
drifts between rounds), plus the bytes of one batch's image tensor (what crosses from
the worker through shared memory). `--smoke` is a few-second path for the test suite: tiny images and
model, one round, ours only, no speed claims.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_catalogue import bench_shards
from bench_report import fmt, table, write_json_and_markdown
from fresh_process import json_from_fresh_process
from machine import load_average, machine, versions
from openclip_pipeline_runner import timed_batches
from openclip_runner import shard_urls
from PIL import Image, ImageFilter
from tqdm.auto import tqdm

from fashion_clip.data.datamodule import WebDatasetDataModule
from fashion_clip.data.shard_spec import count_samples
from fashion_clip.demo.products import Product, plan_products
from fashion_clip.demo.rendering import render_views
from fashion_clip.ingest.shard_writer import ShardSink
from fashion_clip.models.factory import ClipBundle, create_clip

OPENCLIP_VENV_PYTHON = Path(".venv-openclip/bin/python")
RUNNER = Path(__file__).resolve().with_name("openclip_pipeline_runner.py")
REFERENCE = "open_clip_train"
# our variants: (uint8_batches, draft_decode)
OURS = {"ours float": (False, False), "ours uint8": (True, False), "ours uint8+draft": (True, True)}
SPLITS = {
    "train": (REFERENCE, "ours float", "ours uint8", "ours uint8+draft"),
    "eval": (REFERENCE, "ours float", "ours uint8"),
}
PHOTO_SIZE = (1200, 1600)  # width, height of a catalogue product photo
PHOTO_QUALITY = 90
DISTINCT_PHOTOS = 48  # repeated under different keys: decode cost, not content, is what is measured
PHOTO_SHARD_SIZE = 64  # about 20 MB shards
# a summary row's fields besides its name and runs: None where they do not apply (no runs, or no
# open_clip_train runs to divide by); `note` says why a row has no runs
FIGURES = (
    "samples_per_s",
    "min",
    "max",
    "batch_bytes",
    "dtype",
    "ratio",
    "round_ratio_median",
    "round_ratio_min",
    "round_ratio_max",
    "note",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; --smoke replaces the sizes with tiny ones and runs ours only."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny images and model, one round, ours only")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds: every variant once each")
    parser.add_argument("--batches", type=int, default=10, help="timed batches per variant and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (worker start, buffer)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="ViT-B-32", help="the open_clip model whose transforms both use")
    parser.add_argument("--out", type=Path, help="default outputs/bench-data/<date>")
    parser.add_argument(
        "--openclip-python",
        type=Path,
        help=f"open_clip_train's python (default {OPENCLIP_VENV_PYTHON} where it exists, not with --smoke)",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=Path("outputs/bench-data/shards"), help="generated shards, reused"
    )
    args = parser.parse_args(argv)
    args.square_px, args.photo_size = 256, PHOTO_SIZE
    if args.smoke:
        args.rounds, args.batches, args.warmup, args.batch_size = 1, 2, 1, 8
        args.model, args.square_px, args.photo_size = "FashionCLIP-Tiny", 64, (150, 200)
        args.openclip_python = None
    elif args.openclip_python is None and OPENCLIP_VENV_PYTHON.is_file():
        args.openclip_python = OPENCLIP_VENV_PYTHON
    args.out = args.out or Path("outputs/bench-data") / datetime.date.today().isoformat()
    return args


def photo_jpeg(product: Product, size: tuple[int, int], rng: np.random.Generator) -> bytes:
    """A product render scaled up to a photo's size, with fabric-like texture and sensor noise, softened
    as a lens would: flat renders decode unrealistically fast, these weigh what product photos do."""
    width, height = size
    view = render_views(product, max(16, width // 4))[0].resize(size, Image.Resampling.BICUBIC)
    coarse = np.clip(rng.normal(128, 12, (max(1, height // 16), max(1, width // 16), 3)), 0, 255)
    texture = Image.fromarray(coarse.astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(view, np.float32) + np.asarray(texture, np.float32) - 128
    pixels += rng.normal(0, 8, pixels.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=PHOTO_QUALITY)
    return buffer.getvalue()


def photo_shards(work_dir: Path, size: tuple[int, int], samples: int) -> Path:
    """A train split of at least `samples` photos (plus a quarter and a shard to spare, like
    bench_shards), `DISTINCT_PHOTOS` of them repeated; regenerated only when too small."""
    root = work_dir / f"photos-{size[0]}x{size[1]}-q{PHOTO_QUALITY}" / "train"
    needed = math.ceil(1.25 * samples) + PHOTO_SHARD_SIZE
    if (root / "manifest.json").is_file() and (count_samples(str(root)) or 0) >= needed:
        return root
    rng = np.random.default_rng(0)
    products = plan_products({"train": DISTINCT_PHOTOS})["train"]
    photos = [(p, photo_jpeg(p, size, rng)) for p in tqdm(products, desc=f"{size[0]}x{size[1]} photos")]
    with ShardSink(root, "photos", shard_size=PHOTO_SHARD_SIZE) as sink:
        for index in range(needed):
            product, jpg = photos[index % len(photos)]
            meta = json.dumps(product.metadata())
            sink.write(
                {"__key__": f"photo_{index:06d}", "jpg": jpg, "txt": product.captions[0], "json": meta}
            )
    return root


def sources(args: argparse.Namespace) -> dict[str, Path]:
    """Each source's name and train split, big enough for one variant's warm-up and timed batches."""
    samples = (args.warmup + args.batches) * args.batch_size
    width, height = args.photo_size
    return {
        f"{args.square_px} px JPEG": bench_shards(args.work_dir, args.square_px, samples, 1),
        f"{width}x{height} photo JPEG": photo_shards(args.work_dir, args.photo_size, samples),
    }


def ours_rate(
    shards: Path, split: str, variant: str, clip: ClipBundle, args: argparse.Namespace
) -> dict[str, Any]:
    """Our train (or eval) loader with one data worker, timed as open_clip_train's is."""
    uint8, draft = OURS[variant]
    datamodule = WebDatasetDataModule(
        train=str(shards),
        val=str(shards),
        batch_size=args.batch_size,
        num_workers=1,
        train_transform=clip.train_transform,
        val_transform=clip.val_transform,
        tokenizer=clip.tokenizer,
        uint8_batches=uint8,
        draft_decode=draft,
    )
    loader = datamodule.train_dataloader() if split == "train" else datamodule.val_dataloader()
    images = (batch["image"] for batch in loader)
    try:
        return timed_batches(images, args.warmup, args.batches)
    finally:
        images.close()  # drops the loader's iterator, which stops its worker before the next variant's starts


def openclip_rate(python: Path, shards: Path, split: str, args: argparse.Namespace) -> dict[str, Any]:
    """open_clip_train's loader on the same shards, in a fresh process of its own virtualenv."""
    command = [str(python), str(RUNNER), "--shards", shard_urls(shards), "--split", split]
    command += ["--model", args.model, "--batch-size", str(args.batch_size)]
    command += ["--warmup", str(args.warmup), "--batches", str(args.batches)]
    return json_from_fresh_process(command)


def rotated(items: Sequence[str], by: int) -> list[str]:
    """`items` starting at position `by` (wrapping): each round starts with a different variant."""
    by %= len(items)
    return [*items[by:], *items[:by]]


def measure(
    args: argparse.Namespace, shards: dict[str, Path], clip: ClipBundle
) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Every (source, split, variant)'s run per round; open_clip_train's only with its interpreter."""
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for round_index in tqdm(range(args.rounds), desc="rounds"):
        for source, split_dir in shards.items():
            for split, variants in SPLITS.items():
                for variant in rotated(variants, round_index):
                    if variant != REFERENCE:
                        run = ours_rate(split_dir, split, variant, clip, args)
                    elif args.openclip_python is not None:
                        run = openclip_rate(args.openclip_python, split_dir, split, args)
                    else:
                        continue
                    runs[source, split, variant].append(run | {"round": round_index})
    return runs


def reference_note(args: argparse.Namespace) -> str:
    """Why open_clip_train's rows have no figures, when they have none."""
    if args.smoke:
        return "not run: --smoke measures ours only"
    return f"not run ({OPENCLIP_VENV_PYTHON} is missing: make bench-data builds it)"


def summary_row(
    key: tuple[str, str, str], runs: list[dict[str, Any]], reference: list[dict[str, Any]], note: str
) -> dict[str, Any]:
    """A variant's median samples/s over its rounds, min-max, and ratios to open_clip_train's runs
    (theirs of the same round for the per-round ratios); `note` says why a variant without runs has none."""
    source, split, variant = key
    row = {"source": source, "split": split, "pipeline": variant, "runs": runs} | dict.fromkeys(FIGURES)
    if not runs:
        return row | {"note": note}
    rates = [run["samples_per_s"] for run in runs]
    row |= {"samples_per_s": statistics.median(rates), "min": min(rates), "max": max(rates)}
    row |= {"batch_bytes": runs[-1]["batch_bytes"], "dtype": runs[-1]["dtype"]}
    if not reference:
        return row
    ratios = [run["samples_per_s"] / ref["samples_per_s"] for run, ref in zip(runs, reference, strict=True)]
    reference_median = statistics.median(ref["samples_per_s"] for ref in reference)
    return row | {
        "ratio": row["samples_per_s"] / reference_median,
        "round_ratio_median": statistics.median(ratios),
        "round_ratio_min": min(ratios),
        "round_ratio_max": max(ratios),
    }


def summary(
    runs: dict[tuple[str, str, str], list[dict[str, Any]]], source_names: Sequence[str], note: str
) -> list[dict[str, Any]]:
    """A row per source, split and variant, in table order."""
    return [
        summary_row(
            (source, split, variant), runs[source, split, variant], runs[source, split, REFERENCE], note
        )
        for source in source_names
        for split, variants in SPLITS.items()
        for variant in variants
    ]


def spread(low: float | None, high: float | None) -> str:
    """A min-max cell."""
    return "-" if low is None else f"{fmt(low)}-{fmt(high)}"


def results_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per source, split and variant: a row without figures says why in its rate cell."""
    header = ["source", "split", "pipeline", "samples/s per core (median)", "min-max"]
    header += ["/ open_clip_train (medians)", "per-round ratio: median", "min-max", "image tensor per batch"]
    lines = [
        [r["source"], r["split"], r["pipeline"], r["note"] or r["samples_per_s"], spread(r["min"], r["max"])]
        + [r["ratio"], r["round_ratio_median"], spread(r["round_ratio_min"], r["round_ratio_max"])]
        + [None if r["batch_bytes"] is None else f"{r['batch_bytes'] / 2**20:.1f} MiB {r['dtype']}"]
        for r in rows
    ]
    return table(header, lines)


def markdown(results: dict[str, Any]) -> str:
    """The report: what ran where and how, then the table."""
    meta, facts = results["meta"], results["meta"]["machine"]
    lines = [
        f"# Data pipelines per CPU core, {meta['date']}",
        "",
        f"`{meta['command']}`",
        "",
        f"- machine: {facts['cpu']}, {facts['logical_cpus']} logical CPUs, {facts['ram_gib']} GiB RAM",
        "- per core: each loader has one data worker process (torch threads 1) that reads, decodes, "
        "augments, tokenizes and collates; the main process only receives the batches",
        f"- {meta['model']} transforms, batch {meta['batch_size']}, {meta['batches']} timed batches after "
        f"{meta['warmup']} untimed per run, rounds: {meta['rounds']}, the variants' order rotated each round",
        f"- load average (1 min): {meta['load_avg_start']} at the start, {meta['load_avg_end']} at the end",
        f"- ours: {json.dumps(meta['versions']['ours'])}",
        f"- open_clip_train: {json.dumps(meta['versions']['open_clip_train'])}",
    ]
    return "\n".join(lines) + "\n\n" + results_table(results["rows"])


def main(argv: Sequence[str] | None = None) -> int:
    """Generate or reuse the shards, run the interleaved rounds, write and print the table."""
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"  # open_clip_train's processes inherit it
    torch.set_num_threads(1)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(
            ["python", "benchmarks/data_pipeline.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine(),
        "model": args.model,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "batches": args.batches,
        "rounds": args.rounds,
        "data_workers": 1,
        "versions": {
            "ours": versions(sys.executable),
            "open_clip_train": versions(args.openclip_python) if args.openclip_python else None,
        },
    }
    shards = sources(args)
    meta["load_avg_start"] = load_average()
    runs = measure(args, shards, create_clip(args.model))
    meta["load_avg_end"] = load_average()
    results = {"meta": meta, "rows": summary(runs, list(shards), reference_note(args))}
    print(write_json_and_markdown(results, markdown(results), args.out))
    print(f"written to {args.out}/results.json and results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
