"""`make bench`: training throughput side by side with open_clip_train, our speed-ups against our own
defaults (steps interleaved in one process), the data pipeline alone, MFU and evaluation scaling, written
to outputs/bench/<date>/results.{json,md} and printed.

Run: .venv/bin/python benchmarks/bench.py [--openclip-python .venv-openclip/bin/python] [--rows ...]
Each training row runs open_clip_train (from its own virtualenv: it needs webdataset<=0.2.86) and then
`python -m fashion_clip.train` on the same shards, model config, batch size, precision, data workers and
number of steps; both are timed the same way (each step from the end of the previous one, data wait
included) over the steps after the warm-up. `--smoke` is a few-second path for the test suite: one tiny
row of our trainer only, small galleries, no speed claims.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from bench_catalogue import bench_shards
from bench_report import write_results
from eval_rows import eval_row
from machine import load_average, machine, versions
from mfu import matmul_peak_gflops, mfu
from model_step import measure_model_step
from pipeline_rate import pipeline_samples_per_s
from speedup_ab import speedup_row
from tqdm.auto import tqdm
from training_compare import compare_row, not_run_row
from training_rows import ROWS, SMOKE_ROW, TrainingRow, skip_reason, steps_for_machine, with_steps

from fashion_clip.errors import exit_on_user_error
from fashion_clip.models.factory import create_clip

OPENCLIP_VENV_PYTHON = Path(".venv-openclip/bin/python")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; --smoke replaces the defaults with a tiny, quick configuration."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny row, our trainer only, small galleries")
    parser.add_argument("--out", type=Path, help="default outputs/bench/<date>")
    parser.add_argument(
        "--openclip-python",
        type=Path,
        help=f"open_clip_train's python (default {OPENCLIP_VENV_PYTHON} where it exists, not with --smoke)",
    )
    parser.add_argument(
        "--rows", nargs="+", choices=[r.name for r in ROWS], help="default: every runnable row"
    )
    machine_note = "the row's own, more for bf16 rows on a CPU with native bf16"
    parser.add_argument("--warmup", type=int, help=f"untimed steps per row (default: {machine_note})")
    parser.add_argument("--steps", type=int, help=f"timed steps per row (default: {machine_note})")
    parser.add_argument("--workers", type=int, default=2, help="data workers of both trainers")
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="runs per trainer and row, alternating order; the best counts, per-repeat ratios its spread",
    )
    parser.add_argument(
        "--speedup-rounds",
        type=int,
        default=10,
        help="interleaved step pairs per speed-up row (our default vs the row's overrides, one process)",
    )
    parser.add_argument("--pipeline-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--eval-sizes", type=int, nargs="+", default=[1000, 4000, 16000, 32000])
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the matmul measuring the peak")
    parser.add_argument(
        "--ours-overrides", nargs="*", default=[], help="extra Hydra overrides for our trainer"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/fashion-clip-bench"), help="shards cache")
    args = parser.parse_args(argv)
    if args.smoke:
        args.workers, args.repeats, args.pipeline_workers, args.speedup_rounds = 1, 1, [1], 2
        args.eval_sizes, args.matmul_size = [256], 512
    if args.openclip_python is None and not args.smoke and OPENCLIP_VENV_PYTHON.is_file():
        args.openclip_python = OPENCLIP_VENV_PYTHON
    args.out = args.out or Path("outputs/bench") / datetime.date.today().isoformat()
    return args


def planned_rows(
    args: argparse.Namespace, cuda: bool, native_bf16: bool
) -> list[tuple[TrainingRow, str | None]]:
    """Every row of this run, with this machine's step counts unless the command line gives them, and the
    reason it is skipped here (None: it runs)."""
    if args.smoke:
        return [(with_steps(SMOKE_ROW, args.warmup, args.steps), None)]
    names = args.rows or [row.name for row in ROWS]
    rows = [
        with_steps(steps_for_machine(row, native_bf16), args.warmup, args.steps)
        for row in ROWS
        if row.name in names
    ]
    return [(row, skip_reason(row, bool(args.rows), cuda, native_bf16)) for row in rows]


def openclip_not_run(args: argparse.Namespace) -> str:
    """The open_clip_train cells' note when it has no interpreter."""
    if args.smoke:
        return "not run: --smoke runs our trainer only"
    return f"not run: no open_clip_train interpreter ({OPENCLIP_VENV_PYTHON} is created by `make bench`)"


def shards_for(row: TrainingRow, args: argparse.Namespace) -> Path:
    """The row's shards, big enough for every row of the run at the same image size."""
    return bench_shards(args.work_dir, row.shard_image_size, row.samples_needed(args.workers), args.workers)


def training_section(
    args: argparse.Namespace, plan: list[tuple[TrainingRow, str | None]]
) -> list[dict[str, Any]]:
    """Both trainers on every runnable row; skipped rows keep their reason."""
    results = []
    for row, reason in tqdm(plan, desc="training rows"):
        if reason:
            results.append(not_run_row(row, args.workers, reason))
            continue
        run_dir = args.out / "runs" / row.name
        python = args.openclip_python
        results.append(
            compare_row(
                row,
                shards_for(row, args),
                args.workers,
                run_dir,
                python,
                openclip_not_run(args),
                args.repeats,
                args.ours_overrides,
            )
        )
    return results


def model_key(row: TrainingRow) -> tuple:
    """Rows sharing a model, batch and data share the pipeline and FLOP measurements."""
    return (row.model, row.batch_size, row.shard_image_size, row.device, row.loss)


def pipeline_section(
    args: argparse.Namespace, rows: list[TrainingRow]
) -> tuple[list[dict[str, Any]], dict[tuple, dict[str, Any]]]:
    """Per distinct model: the loader alone per worker count, and the model step alone (with its FLOPs)."""
    firsts: dict[tuple, TrainingRow] = {}
    for row in rows:
        firsts.setdefault(model_key(row), row)
    results, steps = [], {}
    for key, row in tqdm(firsts.items(), desc="pipeline and model step"):
        steps[key] = measure_model_step(row, max(2, min(10, row.steps // 2)))
        clip = create_clip(row.model)
        for workers in args.pipeline_workers:
            rate = pipeline_samples_per_s(
                shards_for(row, args), clip, row.batch_size, workers, row.warmup, row.steps
            )
            results.append(
                {
                    "model": row.model,
                    "shard_px": row.shard_image_size,
                    "image_px": steps[key]["image_px"],
                    "batch": row.batch_size,
                    "workers": workers,
                    "precision": row.precision,
                    "pipeline_samples_per_s": rate,
                    "model_step_s": steps[key]["step_s"],
                    "model_samples_per_s": steps[key]["samples_per_s"],
                    "headroom": rate / steps[key]["samples_per_s"],
                }
            )
    return results, steps


def speedup_section(args: argparse.Namespace, rows: list[TrainingRow]) -> list[dict[str, Any]]:
    """Every row that changes our settings, against our default with steps interleaved in one process."""
    sped_up = [row for row in rows if row.ours_overrides]
    return [
        speedup_row(row, warmup=2, rounds=args.speedup_rounds)
        for row in tqdm(sped_up, desc="speed-ups, interleaved")
    ]


def emulated(precision: str, device: str, native_bf16: bool) -> bool:
    """bf16 on a CPU without bf16 instructions runs a software path: no hardware peak to divide by."""
    return precision == "bf16" and device == "cpu" and not native_bf16


def mfu_section(
    args: argparse.Namespace,
    rows: list[TrainingRow],
    training: list[dict[str, Any]],
    steps: dict[tuple, dict[str, Any]],
    native_bf16: bool,
) -> list[dict[str, Any]]:
    """MFU of both trainers per row that ran, against the measured peak of its precision and device."""
    by_name = {result["row"]: result for result in training}
    peaks: dict[tuple[str, str], tuple[float | None, int]] = {}
    results = []
    for row in rows:
        result = by_name[row.name]
        if (row.precision, row.device) not in peaks:
            size = args.matmul_size
            peak = (
                None
                if emulated(row.precision, row.device, native_bf16)
                else matmul_peak_gflops(row.precision, row.device, size)
            )
            peaks[row.precision, row.device] = (peak, size)
        peak, size = peaks[row.precision, row.device]
        flops = steps[model_key(row)]["flops_per_sample"]
        results.append(
            {
                "row": row.name,
                "precision": row.precision,
                "gflops_per_sample": flops / 1e9,
                "peak_gflops": peak,
                "peak_size": size,
                "ours_mfu": mfu(flops, result["ours"]["samples_per_s"], peak),
                "open_clip_train_mfu": mfu(flops, result["open_clip_train"]["samples_per_s"], peak),
            }
        )
    return results


def eval_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The full protocol per gallery size, each in a fresh process."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return [eval_row(size, device) for size in tqdm(args.eval_sizes, desc="evaluation galleries")]


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """Run every section, write results.{json,md} and print the tables."""
    args = parse_args(argv)
    facts = machine()
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": facts,
        "load_avg_start": load_average(),
        "ours_overrides": args.ours_overrides,
        "versions": {
            "ours": versions(sys.executable),
            "open_clip_train": versions(args.openclip_python) if args.openclip_python else None,
        },
    }
    plan = planned_rows(args, torch.cuda.is_available(), facts["native_bf16"])
    training = training_section(args, plan)
    ran = [row for row, reason in plan if reason is None]
    pipeline, steps = pipeline_section(args, ran)
    speedups = speedup_section(args, ran)
    results = {"meta": meta, "training": training, "speedups": speedups, "pipeline": pipeline}
    results["mfu"] = mfu_section(args, ran, training, steps, facts["native_bf16"])
    results["eval"] = eval_section(args)
    meta["load_avg_end"] = load_average()
    print(write_results(results, args.out))
    print(f"written to {args.out}/results.json and results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
