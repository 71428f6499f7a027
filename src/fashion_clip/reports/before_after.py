"""A training run's before/after table: the named protocols' scores of the base model and the best
checkpoint (the numbers `evaluation_results.json` holds and reports compare), printed and saved."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fashion_clip.reports.metric_columns import format_metric, metric_columns
from fashion_clip.reports.results_file import BASE, FINETUNED, EvaluationRecord
from fashion_clip.utils.atomic_output import atomic_output

NAME = "recall_before_after"
STAGES = {BASE: "before", FINETUNED: "after"}
COLUMNS = ("protocol", "metric", "before", "after", "gain")


def stage_metrics(records: Sequence[EvaluationRecord]) -> dict[str, dict[str, float]]:
    """`{"before": {"full/mean_recall": ...}, "after": {...}}`: one number per protocol and metric."""
    results: dict[str, dict[str, float]] = {}
    for record in records:
        stage = results.setdefault(STAGES[record.stage], {})
        stage.update({f"{record.protocol}/{name}": value for name, value in record.metrics.items()})
    return results


def before_after_rows(records: Sequence[EvaluationRecord]) -> list[tuple[str, ...]]:
    """Protocol, metric, before, after and gain, for each metric the protocols report and either stage ran."""
    results = stage_metrics(records)
    rows = []
    for protocol in dict.fromkeys(record.protocol for record in records):
        names = {name for record in records if record.protocol == protocol for name in record.metrics}
        for metric in (column for column in metric_columns(names) if column in names):
            key = f"{protocol}/{metric}"
            before, after = (results.get(stage, {}).get(key) for stage in ("before", "after"))
            gain = f"{after / before:.1f}x" if before and after is not None else "-"
            rows.append((protocol, metric, format_metric(before), format_metric(after), gain))
    return rows


def _markdown(rows: list[tuple[str, ...]]) -> str:
    """GitHub-flavoured table for READMEs and issue comments."""
    lines = [f"| {' | '.join(COLUMNS)} |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + [f"| {' | '.join(r)} |" for r in rows]) + "\n"


def write_before_after(records: Sequence[EvaluationRecord], title: str, output_dir: str | Path) -> Path:
    """Print the table and save it as JSON (`stage_metrics`) and markdown (temp name, then rename)."""
    rows = before_after_rows(records)
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in COLUMNS[:2] else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    out = Path(output_dir)
    for suffix, text in ((".json", json.dumps(stage_metrics(records), indent=2)), (".md", _markdown(rows))):
        with atomic_output(out / f"{NAME}{suffix}") as tmp:
            tmp.write_text(text)
    return out / f"{NAME}.md"
