"""Print evaluation records as a table: the numbers people compare should never be only in a log."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from fashion_clip.reports.metric_columns import format_metric, metric_columns
from fashion_clip.reports.results_file import EvaluationRecord


def print_records(records: Sequence[EvaluationRecord], title: str) -> None:
    """Metrics down, protocols across: stays readable in an 80-column log whatever the protocols."""
    table = Table(title=title)
    table.add_column("metric")
    for r in records:
        table.add_column(r.protocol, justify="right")
    for metric in metric_columns(name for r in records for name in r.metrics):
        if any(metric in r.metrics for r in records):
            table.add_row(metric, *(format_metric(r.metrics.get(metric)) for r in records))
    table.add_row("seconds", *(f"{r.seconds:.1f}" for r in records))
    Console().print(table)
