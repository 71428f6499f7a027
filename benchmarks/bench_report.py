"""results.json and results.md of `make bench`: a table per section; missing values say why they are."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashion_clip.utils.files import atomic_output


def fmt(value: Any) -> str:
    """Three significant figures for measurements, '-' for a value that does not apply."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return "\n".join(lines + [f"| {' | '.join(fmt(cell) for cell in row)} |" for row in rows]) + "\n"


def cell(side: dict[str, Any]) -> str:
    """A trainer's best samples/s (and every run's when it ran more than once), or why it has none."""
    if side["samples_per_s"] is None:
        return side["note"]
    runs = side.get("runs", [])
    if len(runs) < 2:
        return fmt(side["samples_per_s"])
    return f"{fmt(side['samples_per_s'])} (runs: {', '.join(fmt(run['samples_per_s']) for run in runs)})"


def load_range(row: dict[str, Any]) -> str:
    """The 1-minute load averages seen as the row's runs started, lowest to highest."""
    loads = [run["load_avg_1m"] for side in ("ours", "open_clip_train") for run in row[side].get("runs", [])]
    return f"{min(loads)}-{max(loads)}" if loads else "-"


def ratio_range(row: dict[str, Any]) -> str:
    """The per-repeat ratios' min-max, the spread the best runs' ratio comes with."""
    return "-" if row["ratio_min"] is None else f"{fmt(row['ratio_min'])}-{fmt(row['ratio_max'])}"


def training_table(rows: Sequence[dict[str, Any]]) -> str:
    """Training throughput, ours against open_clip_train, same settings per row; rows that change our
    trainer's settings are listed under the table."""
    header = ["row", "model", "precision", "batch", "timed steps (+warm-up)", "workers", "ours samples/s"]
    header += ["open_clip_train samples/s", "ratio ours/open_clip_train", "ratio per repeat (min-max)"]
    header += ["ours warm-up s", "load avg (1 min)"]
    lines = [
        [r["row"], r["model"], r["precision"], r["batch"], f"{r['steps']} (+{r['warmup']})", r["workers"]]
        + [cell(r["ours"]), cell(r["open_clip_train"]), r["ratio"], ratio_range(r)]
        + [r["ours"].get("warmup_s"), load_range(r)]
        for r in rows
    ]
    notes = [
        f"- `{r['row']}`: our trainer with `{' '.join(r['ours_overrides'])}`\n"
        for r in rows
        if r["ours_overrides"]
    ]
    return table(header, lines) + ("\n" + "".join(notes) if notes else "")


def pipeline_table(rows: Sequence[dict[str, Any]]) -> str:
    """Data pipeline alone against the model step alone: below 1.0, training waits for data."""
    header = ["model", "shard px -> model px", "batch", "workers", "pipeline samples/s"]
    header += ["model step alone (s)", "model step samples/s", "pipeline / model step"]
    return table(
        header,
        [
            [
                r["model"],
                f"{r['shard_px']} -> {r['image_px']}",
                r["batch"],
                r["workers"],
                r["pipeline_samples_per_s"],
            ]
            + [r["model_step_s"], r["model_samples_per_s"], r["headroom"]]
            for r in rows
        ],
    )


def peak_cell(row: dict[str, Any]) -> str:
    """The measured peak and its matmul side, or why there is none."""
    if row["peak_gflops"] is None:
        return "none: bf16 is emulated on this CPU (no native bf16), so MFU is undefined"
    return f"{fmt(row['peak_gflops'])} ({row['peak_size']})"


def mfu_table(rows: Sequence[dict[str, Any]]) -> str:
    """Model FLOPs utilisation of each trainer against the measured matmul peak of the row's precision."""
    header = ["row", "precision", "GFLOP/sample (fwd+bwd)", "matmul peak GFLOP/s (n)", "ours MFU"]
    header += ["open_clip_train MFU"]
    return table(
        header,
        [
            [r["row"], r["precision"], r["gflops_per_sample"], peak_cell(r)]
            + [r["ours_mfu"], r["open_clip_train_mfu"]]
            for r in rows
        ],
    )


def speedup_table(rows: Sequence[dict[str, Any]]) -> str:
    """Each speed-up against our default, interleaved step by step in one process."""
    header = ["row", "model", "precision", "batch", "overrides", "rounds", "default step s"]
    header += ["sped-up step s", "speed-up (median of rounds)", "per-round range"]
    return table(
        header,
        [
            [r["row"], r["model"], r["precision"], r["batch"], f"`{' '.join(r['overrides'])}`", r["rounds"]]
            + [r["default_step_s"], r["sped_up_step_s"], r["speedup"]]
            + [f"{fmt(r['speedup_min'])}-{fmt(r['speedup_max'])}"]
            for r in rows
        ],
    )


def eval_table(rows: Sequence[dict[str, Any]]) -> str:
    """Full-protocol evaluation time and memory per gallery size."""
    header = ["gallery", "device", "seconds", "peak RSS MiB", "peak above features MiB"]
    return table(
        header,
        [
            [r["gallery"], r["device"], r["seconds"], r["peak_rss_mib"], r["peak_above_features_mib"]]
            for r in rows
        ],
    )


def markdown(results: dict[str, Any]) -> str:
    """The whole report: what ran where, then a table per section."""
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        f"# fashion-clip benchmark, {meta['date']}",
        "",
        f"`{meta['command']}`",
        "",
        f"- machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, {machine['ram_gib']} GiB RAM, "
        f"torch threads {machine['torch_threads']}, native bf16 {machine['native_bf16']}, "
        f"GPU {machine['gpu']}",
        f"- load average (1 min): {meta['load_avg_start']} at the start, {meta['load_avg_end']} at the end",
        f"- ours: {json.dumps(meta['versions']['ours'])}",
        f"- open_clip_train: {json.dumps(meta['versions']['open_clip_train'])}",
    ]
    if meta["ours_overrides"]:
        lines.append(f"- extra overrides on our side: `{' '.join(meta['ours_overrides'])}`")
    sections = [
        ("Training throughput", training_table(results["training"])),
        ("Our speed-ups, interleaved in one process", speedup_table(results["speedups"])),
        ("Data pipeline alone", pipeline_table(results["pipeline"])),
        ("MFU", mfu_table(results["mfu"])),
        ("Evaluation scaling (full protocol)", eval_table(results["eval"])),
    ]
    return "\n".join(lines) + "\n" + "".join(f"\n## {title}\n\n{text}" for title, text in sections)


def write_json_and_markdown(results: dict[str, Any], text: str, out_dir: Path) -> str:
    """results.json and results.md, each under a temporary name, then renamed; returns the markdown."""
    for name, content in (("results.json", json.dumps(results, indent=2)), ("results.md", text)):
        with atomic_output(out_dir / name) as tmp:
            tmp.write_text(content)
    return text


def write_results(results: dict[str, Any], out_dir: Path) -> str:
    """`make bench`'s results.json and results.md; returns the markdown."""
    return write_json_and_markdown(results, markdown(results), out_dir)
