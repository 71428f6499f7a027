"""Patch dropout's training cost: samples/s of a training step at p = 0, 0.25 and 0.5, interleaved.

Run: .venv/bin/python benchmarks/patch_dropout_cost.py --rounds 20 --steps 3
Each row (tiny, ViT-B/32; random init, --batch images) builds one model from our config with
`model.patch_dropout` set, as `python -m fashion_clip.train model.patch_dropout=P` builds it, and trains it
on one fixed batch (model_step.py). Each round runs --steps steps at each p in turn, setting the model's
PatchDropout to that p in between, and rotates which p goes first: drift on a shared machine hits every p
alike, and weights, optimizer and memory are shared, so only the dropped tokens differ. Per p: the image
tokens the transformer took (class token included), the median of the rounds' samples/s with its min-max,
and the median of the per-round speed-ups over p = 0. Printed as markdown and written to
--out/patch_dropout_cost.{md,json} with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from machine import machine
from model_step import build_training, timed_step
from training_rows import TINY_FP32, VITB32_FP32, TrainingRow

from fashion_clip.utils.files import atomic_output

FRACTIONS = (0.0, 0.25, 0.5)
ROWS = {"tiny": TINY_FP32, "vitb32": VITB32_FP32}
COLUMNS = ("model", "batch", "p", "image tokens", "samples/s", "min-max", "speed-up vs p=0")


def image_tokens(model: torch.nn.Module, step: Callable[[], None]) -> int:
    """Tokens the image tower's transformer takes in one training step: what patch dropout shortens."""
    seen: list[int] = []
    hook = model.visual.transformer.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1]))
    step()
    hook.remove()
    return seen[0]


def rotated(items: Sequence[float], start: int) -> list[float]:
    """`items` starting at index `start % len`, so each goes first in turn over the rounds."""
    start %= len(items)
    return [*items[start:], *items[:start]]


def interleaved_rates(row: TrainingRow, rounds: int, steps: int, warmup: int) -> list[dict[str, Any]]:
    """One table row per p: tokens, samples/s per round (median, min, max) and the median speed-up."""
    model, step, _ = build_training(row, [f"model.patch_dropout={max(FRACTIONS)}"])
    dropout = model.visual.patch_dropout
    tokens = {}
    for p in FRACTIONS:
        dropout.prob = p
        tokens[p] = image_tokens(model, step)
        for _ in range(warmup):
            step()
    rates: dict[float, list[float]] = {p: [] for p in FRACTIONS}
    for round_index in range(rounds):
        for p in rotated(FRACTIONS, round_index):
            dropout.prob = p
            seconds = sum(timed_step(step, row.device) for _ in range(steps))
            rates[p].append(row.batch_size * steps / seconds)
    base = rates[FRACTIONS[0]]
    return [
        {
            "model": row.model,
            "batch": row.batch_size,
            "p": p,
            "image tokens": tokens[p],
            "samples/s": round(statistics.median(rates[p]), 1),
            "min-max": f"{min(rates[p]):.1f}-{max(rates[p]):.1f}",
            "speed-up vs p=0": round(
                statistics.median(r / b for r, b in zip(rates[p], base, strict=True)), 2
            ),
        }
        for p in FRACTIONS
    ]


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The table with a line saying what it was measured on."""
    title = (
        f"Patch dropout cost: {meta['device']} {meta['precision']} ({meta['machine']['cpu']}, "
        f"{meta['threads']} threads, load {meta['load_avg_1m']}), {meta['rounds']} interleaved rounds of "
        f"{meta['steps']} steps per p\n\n"
    )
    header = f"| {' | '.join(COLUMNS)} |\n|{'---|' * len(COLUMNS)}\n"
    return title + header + "".join(f"| {' | '.join(str(r[c]) for c in COLUMNS)} |\n" for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each row, print the table and write it under --out."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (each p once per round)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per p in a round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per p before the rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {"batch_size": args.batch, "device": args.device, "precision": args.precision}
    rows = [
        line
        for name in args.rows
        for line in interleaved_rates(replace(ROWS[name], **settings), args.rounds, args.steps, args.warmup)
    ]
    meta = {
        **{k: v for k, v in vars(args).items() if k not in ("out", "rows")},
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "machine": machine(),
    }
    table = markdown(rows, meta)
    print(table)
    for name, text in (
        ("patch_dropout_cost.md", table),
        ("patch_dropout_cost.json", json.dumps({"meta": meta, "rows": rows}, indent=2)),
    ):
        with atomic_output(args.out / name) as tmp:
            tmp.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
