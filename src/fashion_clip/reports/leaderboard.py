"""Our `marqo` records beside Marqo's published leaderboard (LEADERBOARD.md of
github.com/marqo-ai/marqo-FashionCLIP), in its layout: per dataset and task (text-to-image: the mean of
Recall@1 and Recall@10, both, and MRR; other tasks: the same with P@1 and P@10), then the text-to-image,
category-to-product and sub-category-to-product tasks averaged over the datasets that have them. The
published rows ship as data, with their source and date (marqo_leaderboard.json)."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fashion_clip.records import EvaluationRecord
from fashion_clip.reports.tables import format_metric
from fashion_clip.utils.files import atomic_output
from fashion_clip.utils.metadata_text import markdown_cell

PROTOCOL = "marqo"
PUBLISHED_FILE = "marqo_leaderboard.json"
STEM = "leaderboard_marqo"
PUBLISHED, OURS = "published", "ours"
TEXT_TO_IMAGE = "Text-To-Image"
RECALL_COLUMNS = ("AvgRecall", "Recall@1", "Recall@10", "MRR")
PRECISION_COLUMNS = ("AvgP", "P@1", "P@10", "MRR")
ALL_COLUMNS = ("AvgRecall", "Recall@1", "Recall@10", "AvgP", "P@1", "P@10", "MRR")
# Marqo's column -> the metric of a `marqo` record it shows
RECORD_METRICS = {"Recall@1": "recall1", "Recall@10": "recall10", "P@1": "p1", "P@10": "p10", "MRR": "mrr"}
MEANS = {"AvgRecall": ("Recall@1", "Recall@10"), "AvgP": ("P@1", "P@10")}
# the tasks Marqo averages over datasets (summarize_results.py --tasks-avg-results)
AVERAGED_TASKS = ("Text-To-Image", "Category-To-Product", "Sub-Category-To-Product")
# the per-task metrics the evaluate command prints, in order
PRINTED = ("queries", "recall1", "recall10", "p1", "p10", "mrr", "ndcg10", "map10", "missing_relevant")


@dataclass(frozen=True)
class Row:
    """One model on one task of one dataset, or averaged over datasets (`dataset` empty, `datasets` saying
    over which)."""

    task: str
    model: str
    source: str
    values: dict[str, float]
    dataset: str = ""
    datasets: str = ""


def task_title(name: str) -> str:
    """A task as LEADERBOARD.md heads it: `text-to-image` -> `Text-To-Image` (summarize_results.py)."""
    return name.title()


def task_columns(task: str) -> tuple[str, ...]:
    """Marqo's columns of a task: recalls for text-to-image, precisions for the rest."""
    return RECALL_COLUMNS if task.lower() == TEXT_TO_IMAGE.lower() else PRECISION_COLUMNS


def with_means(values: Mapping[str, float]) -> dict[str, float]:
    """The values plus AvgRecall / AvgP, the mean of the @1 and @10 columns where both are there."""
    means = {
        name: statistics.fmean(values[p] for p in parts)
        for name, parts in MEANS.items()
        if all(p in values for p in parts)
    }
    return means | dict(values)


def task_metrics(metrics: Mapping[str, float]) -> dict[tuple[str, str], dict[str, float]]:
    """A `marqo` record's `<dataset>/<task>/<metric>` keys as {(dataset, task): {metric: value}}."""
    grouped: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3:
            grouped.setdefault((parts[0], parts[1]), {})[parts[2]] = value
    return grouped


def model_label(record: EvaluationRecord) -> str:
    """A model as our rows name it: architecture, stage and the weights file or tag it was evaluated with."""
    weights = record.checkpoint or record.pretrained
    label = f"{record.model} ({record.stage})"
    return f"{label} {Path(weights).name}" if weights else label


def record_rows(records: Iterable[EvaluationRecord]) -> list[Row]:
    """One row per task of every `marqo` record, under Marqo's column names."""
    rows = []
    for record in records:
        if record.protocol != PROTOCOL:
            continue
        for (dataset, task), metrics in task_metrics(record.metrics).items():
            values = {column: metrics[name] for column, name in RECORD_METRICS.items() if name in metrics}
            rows.append(Row(task_title(task), model_label(record), OURS, with_means(values), dataset))
    return rows


def published_payload() -> dict[str, Any]:
    """The shipped copy of LEADERBOARD.md: its source and its rows."""
    return json.loads(files("fashion_clip.reports").joinpath(PUBLISHED_FILE).read_text(encoding="utf-8"))


def published_rows(payload: Mapping[str, Any]) -> tuple[list[Row], list[Row]]:
    """The published per-dataset rows and averaged rows."""

    def values(cells: Sequence[Any], columns: Sequence[str]) -> dict[str, float]:
        return {c: v for c, v in zip(columns, cells, strict=True) if c in ALL_COLUMNS and v is not None}

    rows = [
        Row(cells[1], cells[2], PUBLISHED, values(cells, payload["rows_columns"]), dataset=cells[0])
        for cells in payload["rows"]
    ]
    averages = [
        Row(cells[0], cells[2], PUBLISHED, values(cells, payload["averages_columns"]), datasets=str(cells[1]))
        for cells in payload["averages"]
    ]
    return rows, averages


def averaged_rows(rows: Sequence[Row]) -> list[Row]:
    """Each model's averaged tasks: a dataset's rows (several runs) averaged first, then the datasets."""
    groups: dict[tuple[str, str], dict[str, list[Row]]] = {}
    for row in rows:
        if row.task in AVERAGED_TASKS:
            groups.setdefault((row.task, row.model), {}).setdefault(row.dataset, []).append(row)
    averaged = []
    for (task, model), by_dataset in groups.items():
        columns = [
            c for c in task_columns(task) if all(c in r.values for g in by_dataset.values() for r in g)
        ]
        values = {
            c: statistics.fmean(statistics.fmean(r.values[c] for r in g) for g in by_dataset.values())
            for c in columns
        }
        names = ", ".join(sorted(by_dataset))
        averaged.append(Row(task, model, OURS, values, datasets=f"{len(by_dataset)}: {names}"))
    return averaged


def cells(row: Row, columns: Sequence[str], averaged: bool) -> list[str]:
    """A table row's text cells: model, source, (datasets,) then the columns at Marqo's 3 decimals."""
    numbers = [f"{row.values[c]:.3f}" if c in row.values else "-" for c in columns]
    return [row.model, row.source, *([row.datasets] if averaged else []), *numbers]


def markdown_table(rows: Sequence[Row], task: str, averaged: bool) -> list[str]:
    """A task's table, our rows first."""
    columns = task_columns(task)
    header = ["Model", "Source", *(["Datasets"] if averaged else []), *columns]
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return lines + [f"| {' | '.join(map(markdown_cell, cells(r, columns, averaged)))} |" for r in rows]


def to_markdown(ours: Sequence[Row], payload: Mapping[str, Any]) -> str:
    """LEADERBOARD.md's layout over the datasets and tasks we have, the published rows under ours."""
    source = payload["source"]
    published, published_averages = published_rows(payload)
    lines = [
        "# Marqo fashion benchmark: our runs beside the published leaderboard",
        "",
        f"Published rows: [{source['file']}]({source['url']}) of {source['repository']} (updated "
        f"{source['updated']}, copied {source['copied']}). Comparable only with the same data, ground "
        "truth, query prefix and precision: see docs/evaluation.md (Marqo's benchmark).",
        "",
        "## Average Results",
    ]
    averages = averaged_rows(ours)
    for task in [t for t in AVERAGED_TASKS if any(r.task == t for r in averages)]:
        rows = [r for r in averages if r.task == task] + [r for r in published_averages if r.task == task]
        lines += [f"### {task}", *markdown_table(rows, task, averaged=True)]
    for dataset in sorted({r.dataset for r in ours}, key=str.lower):
        lines.append(f"## {dataset}")
        for task in dict.fromkeys(r.task for r in ours if r.dataset == dataset):
            shown = [r for r in [*ours, *published] if r.dataset == dataset and r.task == task]
            lines += [f"### {task}", *markdown_table(shown, task, averaged=False)]
    return "\n".join(lines) + "\n"


def to_csv(ours: Sequence[Row], payload: Mapping[str, Any]) -> str:
    """Every row of the markdown, one line each, unrounded; averaged rows have an empty dataset."""
    published, published_averages = published_rows(payload)
    tasks = {(r.dataset, r.task) for r in ours}
    averages = averaged_rows(ours)
    shown = [
        *averages,
        *(r for r in published_averages if r.task in {a.task for a in averages}),
        *ours,
        *(r for r in published if (r.dataset, r.task) in tasks),
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "task", "datasets", "model", "source", *ALL_COLUMNS])
    for r in shown:
        writer.writerow(
            [r.dataset, r.task, r.datasets, r.model, r.source, *(r.values.get(c, "") for c in ALL_COLUMNS)]
        )
    return buffer.getvalue()


def write_leaderboard(records: Sequence[EvaluationRecord], out_dir: str | Path) -> list[Path]:
    """`leaderboard_marqo.{md,csv}` in `out_dir` when a record is of the marqo protocol; none otherwise."""
    ours = record_rows(records)
    if not ours:
        return []
    payload = published_payload()
    written = []
    for suffix, text in ((".md", to_markdown(ours, payload)), (".csv", to_csv(ours, payload))):
        path = Path(out_dir) / f"{STEM}{suffix}"
        with atomic_output(path) as tmp:
            tmp.write_text(text)
        written.append(path)
    return written


def print_tasks(records: Sequence[EvaluationRecord]) -> None:
    """Each marqo record's per-task metrics as a terminal table, after the protocol table."""
    for record in records:
        if record.protocol != PROTOCOL:
            continue
        table = Table(title=f"marqo tasks ({record.stage})")
        for column in ("dataset/task", *PRINTED):
            table.add_column(column, justify="left" if column == "dataset/task" else "right")
        for (dataset, task), metrics in task_metrics(record.metrics).items():
            numbers = [
                f"{metrics[n]:g}" if n in ("queries", "missing_relevant") else format_metric(metrics.get(n))
                for n in PRINTED
            ]
            table.add_row(f"{dataset}/{task}", *numbers)
        Console(width=160).print(table)
