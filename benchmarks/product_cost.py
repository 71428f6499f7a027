"""Per-step cost of the product-aware variants next to the default, each measured interleaved.

Run: .venv/bin/python benchmarks/product_cost.py [--rounds 30] [--data data/demo_hard/train]
Model step (tiny, batch 64, fp32, CPU): the default loss and a variant take turns on one batch, one
optimizer step each, alternating which goes first (speedup_ab.py's method), so machine drift hits both;
the cost is the median per-round ratio variant / default (above 1: the variant is slower). Data pipeline
(decode + augment + tokenize, no workers): `random` batches and a composed `data.batching` take turns, a
batch each, on the same shards. Writes outputs/bench/product_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from speedup_ab import interleaved_speedup
from training_rows import TINY_FP32, sped_up

from fashion_clip.data.datamodule import WebDatasetDataModule
from fashion_clip.models.factory import create_clip
from fashion_clip.utils.files import atomic_output

LOSS_VARIANTS = (
    (TINY_FP32, "loss.positives=product"),
    (TINY_FP32, "loss.positives=product", "loss.same_caption_positive=true"),
    (replace(TINY_FP32, loss="siglip"), "loss.positives=product"),
)
BATCHINGS = ("product_unique", "category_hard")


def loss_cost(rounds: int) -> list[dict[str, Any]]:
    """Each loss variant's step against its loss's default step, interleaved."""
    results = []
    for base, *overrides in LOSS_VARIANTS:
        row = sped_up(base, "variant", *overrides)
        measured = interleaved_speedup(row, warmup=3, rounds=rounds)
        results.append(
            {
                "variant": f"loss={row.loss} " + " ".join(overrides),
                "default_s": measured["default_step_s"],
                "variant_s": measured["sped_up_step_s"],
                "cost": 1 / measured["speedup"],
                "cost_min": 1 / measured["speedup_max"],
                "cost_max": 1 / measured["speedup_min"],
            }
        )
    return results


def endless_batches(data: Path, batching: str, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Train batches epoch after epoch, in the main process, so both streams share one core's load."""
    clip = create_clip("FashionCLIP-Tiny")
    module = WebDatasetDataModule(
        train=str(data),
        batch_size=batch_size,
        num_workers=0,
        batching=batching,
        train_transform=clip.train_transform,
        val_transform=clip.val_transform,
        tokenizer=clip.tokenizer,
    )
    loader = module.train_dataloader()
    return itertools.chain.from_iterable(iter(loader) for _ in itertools.count())


def timed_next(batches: Iterator[Any]) -> float:
    """Seconds to produce the next batch."""
    start = time.perf_counter()
    next(batches)
    return time.perf_counter() - start


def batching_cost(data: Path, batch_size: int, rounds: int) -> list[dict[str, Any]]:
    """Each composed batching's seconds per batch against `random`'s, a batch each in turn."""
    results = []
    for batching in BATCHINGS:
        plain = endless_batches(data, "random", batch_size)
        composed = endless_batches(data, batching, batch_size)
        timed_next(plain), timed_next(composed)  # the shuffle buffer and the category pool fill
        pairs = []
        for index in range(rounds):
            if index % 2:
                variant_s = timed_next(composed)
                default_s = timed_next(plain)
            else:
                default_s = timed_next(plain)
                variant_s = timed_next(composed)
            pairs.append((default_s, variant_s))
        ratios = [variant / default for default, variant in pairs]
        results.append(
            {
                "variant": f"data.batching={batching}",
                "default_s": statistics.median(p[0] for p in pairs),
                "variant_s": statistics.median(p[1] for p in pairs),
                "cost": statistics.median(ratios),
                "cost_min": min(ratios),
                "cost_max": max(ratios),
            }
        )
    return results


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    """The rows as a markdown table under a title."""
    header = "| variant | default s | variant s | cost (median, min-max) |"
    lines = [f"## {title}", "", header, "|---|---|---|---|"]
    lines += [
        f"| {r['variant']} | {r['default_s']:.4f} | {r['variant_s']:.4f} | "
        f"x{r['cost']:.3f} ({r['cost_min']:.2f}-{r['cost_max']:.2f}) |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds per variant")
    parser.add_argument("--data", type=Path, default=Path("data/demo_hard/train"), help="train shards")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args(argv)
    sections = {
        "model step (tiny, batch 64, fp32)": loss_cost(args.rounds),
        f"data pipeline ({args.data}, batch {args.batch}, main process)": batching_cost(
            args.data, args.batch, args.rounds
        ),
    }
    console = Console()
    for title, rows in sections.items():
        table = Table(title=title)
        for column in ("variant", "default s", "variant s", "cost (median, min-max)"):
            table.add_column(column)
        for r in rows:
            table.add_row(
                r["variant"],
                f"{r['default_s']:.4f}",
                f"{r['variant_s']:.4f}",
                f"x{r['cost']:.3f} ({r['cost_min']:.2f}-{r['cost_max']:.2f})",
            )
        console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out / "product_cost.json") as tmp:
        Path(tmp).write_text(json.dumps(sections, indent=2))
    with atomic_output(args.out / "product_cost.md") as tmp:
        Path(tmp).write_text("\n\n".join(markdown(rows, title) for title, rows in sections.items()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
