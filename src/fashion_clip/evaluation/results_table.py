"""Print evaluation records as a table: the numbers people compare should never be only in a log."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from fashion_clip.evaluation.results_file import EvaluationRecord

RECALL_COLUMNS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mean_recall")
CLASSIFICATION_COLUMNS = ("top1", "top5")
RANKING_COLUMNS = ("p1", "p10", "mrr", "ndcg10", "map10")
METRIC_COLUMNS = RECALL_COLUMNS + CLASSIFICATION_COLUMNS + RANKING_COLUMNS


def format_metric(value: float | None) -> str:
    """Four decimals, or a dash where a protocol has no such metric (e.g. recall for zeroshot)."""
    return "-" if value is None else f"{value:.4f}"


def print_records(records: Sequence[EvaluationRecord], title: str) -> None:
    """Metrics down, protocols across: stays readable in an 80-column log whatever the protocols."""
    table = Table(title=title)
    table.add_column("metric")
    for r in records:
        table.add_column(r.protocol, justify="right")
    for metric in METRIC_COLUMNS:
        if any(metric in r.metrics for r in records):
            table.add_row(metric, *(format_metric(r.metrics.get(metric)) for r in records))
    table.add_row("seconds", *(f"{r.seconds:.1f}" for r in records))
    Console().print(table)
