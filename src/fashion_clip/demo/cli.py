"""`python -m fashion_clip.demo` (`fashion-clip-demo-data`): build the demo catalogue unless an identical
complete one is already there."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from fashion_clip.data.manifest import Manifest
from fashion_clip.demo.catalogue import catalogue_is_complete, generate_demo_catalogue
from fashion_clip.demo.presets import DEFAULT_DIFFICULTY, DEFAULT_PRODUCTS, HARD, HARD_PRODUCTS, SPLITS


def _summary(counts: Mapping[str, int], manifests: Mapping[str, Manifest]) -> str:
    """One line per split, so a user sees at a glance what was written."""
    return "\n".join(
        f"  {split:<5} {counts[split]:>5} products {m.num_samples:>6} images {len(m.shards):>3} shards"
        for split, m in manifests.items()
    )


def _counts_text(counts: Mapping[str, int]) -> str:
    """Split sizes as the --products option takes them, for its help text."""
    return " ".join(str(counts[split]) for split in SPLITS)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options mirroring `generate_demo_catalogue`'s arguments."""
    parser = argparse.ArgumentParser(
        prog="fashion-clip-demo-data", description="Generate the embedded synthetic fashion catalogue."
    )
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output directory")
    parser.add_argument("--force", action="store_true", help="regenerate even if a complete catalogue exists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=96, help="image side in pixels")
    parser.add_argument(
        "--products",
        type=int,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        help=f"number of products per split (default {_counts_text(DEFAULT_PRODUCTS)}, "
        f"with --hard {_counts_text(HARD_PRODUCTS)})",
    )
    parser.add_argument("--shard-size", type=int, default=500, help="samples per tar shard")
    parser.add_argument(
        "--hard",
        action="store_true",
        help="4-6 views per product, near-duplicate products, long Fashion-Gen-like captions, and "
        "near-duplicates whose captions are identical",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: build the catalogue unless an identical complete one is already there."""
    args = _parse_args(argv)
    difficulty = HARD if args.hard else DEFAULT_DIFFICULTY
    if args.products:
        counts = dict(zip(SPLITS, args.products, strict=True))
    else:
        counts = dict(HARD_PRODUCTS if args.hard else DEFAULT_PRODUCTS)
    params = dict(
        products=counts,
        image_size=args.image_size,
        seed=args.seed,
        shard_size=args.shard_size,
        difficulty=difficulty,
    )
    if not args.force and catalogue_is_complete(args.out, **params):
        print(f"{args.out}: demo catalogue already complete, skipping (use --force to regenerate)")
        return 0
    start = time.perf_counter()
    manifests = generate_demo_catalogue(args.out, progress=True, **params)
    print(f"{args.out}: demo catalogue written in {time.perf_counter() - start:.1f}s")
    print(_summary(counts, manifests))
    return 0
