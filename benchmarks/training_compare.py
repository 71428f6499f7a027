"""One training row, both trainers in turn on the same shards: samples/s after warm-up and the ratio."""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from machine import load_average
from openclip_runner import run_openclip
from ours_runner import run_ours
from training_rows import TrainingRow

TRAINERS = ("open_clip_train", "ours")


def timed_rate(step_seconds: Sequence[float], row: TrainingRow) -> dict[str, float]:
    """Samples/s over the row's timed steps (those after the warm-up), their median step time, and the
    warm-up's seconds (where a compiled model pays its compilation)."""
    if len(step_seconds) < row.total_steps:
        raise RuntimeError(
            f"only {len(step_seconds)} of the {row.total_steps} steps of row {row.name} were timed"
        )
    timed = step_seconds[row.warmup : row.total_steps]
    return {
        "samples_per_s": row.steps * row.batch_size / sum(timed),
        "median_step_s": statistics.median(timed),
        "warmup_s": sum(step_seconds[: row.warmup]),
    }


def row_settings(row: TrainingRow, workers: int) -> dict[str, Any]:
    """What both trainers were given, for the results file."""
    return {
        "row": row.name,
        "model": row.model,
        "precision": row.precision,
        "batch": row.batch_size,
        "warmup": row.warmup,
        "steps": row.steps,
        "workers": workers,
        "device": row.device,
        "ours_overrides": list(row.ours_overrides),
    }


def attempt(run: Callable[[], list[float]], row: TrainingRow) -> dict[str, Any]:
    """Run one trainer once; a failure becomes a note instead of ending the whole benchmark."""
    load = load_average()
    try:
        return timed_rate(run(), row) | {"load_avg_1m": load}
    except (RuntimeError, OSError) as error:
        return {"samples_per_s": None, "note": f"failed: {error}", "load_avg_1m": load}


def run_one(
    trainer: str,
    row: TrainingRow,
    shards: Path,
    workers: int,
    run_dir: Path,
    openclip_python: Path | None,
    overrides: Sequence[str],
) -> list[float]:
    """One training run of `trainer` (a name in TRAINERS); returns its step seconds."""
    if trainer == "ours":
        return run_ours(row, shards, workers, run_dir, overrides)
    return run_openclip(openclip_python, row, shards, workers, run_dir)


def best_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of a trainer's runs (on shared cores, other load only ever slows a run down), with
    every run kept; a failed run's note wins, so a failure is never hidden behind a success."""
    failed = [run for run in runs if run["samples_per_s"] is None]
    best = failed[0] if failed else max(runs, key=lambda run: run["samples_per_s"])
    return best | {"runs": runs}


def repeat_ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[float]:
    """Ours / open_clip_train per repeat, whose two runs ran back to back: how far drift moves the ratio."""
    return [
        mine["samples_per_s"] / other["samples_per_s"]
        for mine, other in zip(ours, theirs, strict=False)
        if mine["samples_per_s"] and other["samples_per_s"]
    ]


def ratio_fields(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The best runs' ratio and the per-repeat ratios' min-max beside it (None where a side has none)."""
    per_repeat = repeat_ratios(ours.get("runs", []), theirs.get("runs", []))
    both = ours["samples_per_s"] and theirs["samples_per_s"]
    return {
        "ratio": ours["samples_per_s"] / theirs["samples_per_s"] if both else None,
        "repeat_ratios": per_repeat,
        "ratio_min": min(per_repeat, default=None),
        "ratio_max": max(per_repeat, default=None),
    }


def compare_row(
    row: TrainingRow,
    shards: Path,
    workers: int,
    run_dir: Path,
    openclip_python: Path | None,
    not_run: str,
    repeats: int = 1,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Both trainers `repeats` times, alternating which goes first; `not_run` is the note when
    open_clip_train has no python."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in TRAINERS}
    for repeat in range(repeats):
        for name in TRAINERS if repeat % 2 == 0 else TRAINERS[::-1]:
            if name == "open_clip_train" and openclip_python is None:
                continue
            run_trainer = functools.partial(
                run_one, name, row, shards, workers, run_dir / f"{name}-{repeat}", openclip_python, overrides
            )
            runs[name].append(attempt(run_trainer, row))
    ours = best_run(runs["ours"])
    theirs = (
        best_run(runs["open_clip_train"]) if openclip_python else {"samples_per_s": None, "note": not_run}
    )
    return row_settings(row, workers) | {"ours": ours, "open_clip_train": theirs} | ratio_fields(ours, theirs)


def not_run_row(row: TrainingRow, workers: int, reason: str) -> dict[str, Any]:
    """A row that was skipped on this machine, with the reason in both cells."""
    cell = {"samples_per_s": None, "note": reason}
    sides = {"ours": cell, "open_clip_train": dict(cell)}
    return row_settings(row, workers) | sides | ratio_fields(cell, cell)
