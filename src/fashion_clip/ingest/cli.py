"""Command-line options and the split loop shared by every importer that writes shards."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fashion_clip.errors import UserError
from fashion_clip.ingest.items import JPEG_QUALITY, Entry, without_duplicates
from fashion_clip.ingest.product_split import HELD_OUT_SPLIT, outside_siblings, select_split, sibling_products
from fashion_clip.ingest.run_summary import EXIT_UNUSABLE_INPUT, exit_code, print_summary
from fashion_clip.ingest.split_writer import SplitResult, WriterOptions, refuse_changed_split, write_split

SPLIT_WORDS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}


class UnusableInput(UserError):
    """The input cannot be read as a whole (wrong format, missing root): nothing is written."""


def infer_split(source: Path) -> str | None:
    """Split named by a file like `clip_dataset_valid.json` or `fashiongen_256_256_train.h5`, if any."""
    words = [w for w in re.split(r"[^a-z]+", source.stem.lower()) if w in SPLIT_WORDS]
    return SPLIT_WORDS[words[-1]] if words else None


def add_writer_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every shard-writing command shares, spelled the same everywhere."""
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("webdataset_shards"),
        help="root directory; each split is written to OUTPUT_DIR/SPLIT with its manifest.json",
    )
    parser.add_argument("--split", help="split to write (train/val/test); default: read from the input name")
    parser.add_argument("--dataset-name", help="shard name prefix; default: the input file's stem")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per tar shard")
    parser.add_argument("--max-shards", type=int, help="stop after this many shards (quick trials)")
    parser.add_argument(
        "--max-side",
        type=int,
        help="shrink images so the longer side is at most this (e.g. 512 for 224-px models: training "
        "decodes and crops far fewer pixels, and shards shrink several-fold); recorded in the manifest",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=JPEG_QUALITY,
        help=f"JPEG quality of the stored images, 1-100 (default {JPEG_QUALITY}); recorded in the manifest",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes encoding images")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="share of products carved out of this split into OUTPUT_DIR/test",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished split written from another input or with other options",
    )


def writer_options(args: argparse.Namespace) -> WriterOptions:
    """Validated options; argparse cannot express 'positive' or 'a fraction' itself."""
    if args.shard_size < 1 or args.workers < 1 or (args.max_shards is not None and args.max_shards < 1):
        raise UnusableInput("--shard-size, --workers and --max-shards must be >= 1")
    if args.max_side is not None and args.max_side < 1:
        raise UnusableInput("--max-side must be >= 1")
    if not 1 <= args.jpeg_quality <= 100:
        raise UnusableInput(f"--jpeg-quality must be between 1 and 100, got {args.jpeg_quality}")
    if not 0.0 <= args.test_fraction < 1.0:
        raise UnusableInput(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    return WriterOptions(
        args.shard_size, args.max_shards, args.max_side, args.workers, not args.no_progress, args.jpeg_quality
    )


def split_plan(args: argparse.Namespace, source: Path) -> list[tuple[str, bool]]:
    """(split, held_out) pairs to write: the named split, plus the test split carved from it if asked."""
    split = args.split or infer_split(source)
    if split is None:
        raise UnusableInput(f"cannot tell the split from {source.name!r}; pass --split train|val|test")
    if args.test_fraction and split == HELD_OUT_SPLIT:
        raise UnusableInput("--test-fraction carves a test split out of another split; it cannot carve test")
    return [(split, False)] + ([(HELD_OUT_SPLIT, True)] if args.test_fraction else [])


def write_splits(
    entries: Callable[[], Iterable[Entry]],
    args: argparse.Namespace,
    source: Path,
    identity: dict,
    total: int | None = None,
) -> list[SplitResult]:
    """Write each planned split from a fresh pass over the source, keeping products out of sibling splits;
    every split is checked against what its directory holds before the first one is written."""
    plan = split_plan(args, source)
    options = writer_options(args)
    dataset = args.dataset_name or source.stem
    owners = sibling_products(args.output_dir, exclude={name for name, _ in plan})
    jobs = [
        (
            split,
            held,
            f"{dataset}_{split}" if held else dataset,
            {
                **identity,
                "split": split,
                "test_fraction": args.test_fraction,
                "held_out": held,
                "siblings": sorted(owners.items()),
            },
        )
        for split, held in plan
    ]
    for split, _, name, settings in jobs:
        refuse_changed_split(args.output_dir / split, name, settings, options, args.overwrite)
    return [
        write_split(
            outside_siblings(select_split(without_duplicates(entries()), args.test_fraction, held), owners),
            args.output_dir / split,
            name,
            options,
            settings,
            None if args.test_fraction else total,
        )
        for split, held, name, settings in jobs
    ]


def run_writer(build: Callable[[], tuple[list[SplitResult], list[str]]], argv_name: str) -> int:
    """Run an importer: refusals and unusable input become one clear line and exit code 2."""
    try:
        results, notes = build()
    except UserError as e:  # unusable input, refused output, a malformed manifest already there
        print(f"{argv_name}: error: {e}")
        return EXIT_UNUSABLE_INPUT
    print_summary(results, notes)
    return exit_code(results)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse with the shared writer options added to a tool's own."""
    add_writer_arguments(parser)
    return parser.parse_args(argv)
