"""Attribute search per field (`colour`, `material`, ...): the rows people read to see which attributes a
model can find, for the console and for the comparison report (with the change over the base model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from fashion_clip.reports.comparison import ComparisonRow, format_gain, relative_gain
from fashion_clip.reports.metric_columns import RANKING_COLUMNS, format_metric
from fashion_clip.reports.results_file import EvaluationRecord

ALL_FIELDS = "(all)"
COUNT_COLUMNS = ("values", "queries")
GAIN_METRIC = "ndcg10"


def searched_fields(metrics: Mapping[str, float]) -> list[str]:
    """Fields the protocol looked at (searched or skipped), in the order it took them."""
    return [key.removesuffix("/values") for key in metrics if key.endswith("/values")]


def field_metrics(metrics: Mapping[str, float], field: str) -> dict[str, float]:
    """One field's numbers under plain names (the totals for ALL_FIELDS)."""
    if field == ALL_FIELDS:
        return {name: metrics[name] for name in (*RANKING_COLUMNS, "queries") if name in metrics}
    prefix = f"{field}/"
    return {key[len(prefix) :]: value for key, value in metrics.items() if key.startswith(prefix)}


def field_cells(values: Mapping[str, float]) -> list[str]:
    """Counts, then metrics; a skipped field (fewer than 2 values) shows dashes."""
    counts = ["-" if values.get(name) is None else f"{values[name]:g}" for name in COUNT_COLUMNS]
    return counts + [format_metric(values.get(name)) for name in RANKING_COLUMNS]


def print_fields(records: Sequence[EvaluationRecord]) -> None:
    """The per-field table of each attributes record, printed after the protocol table."""
    for record in records:
        if record.protocol != "attributes":
            continue
        table = Table(title=f"attributes by field ({record.stage})")
        for column in ("field", *COUNT_COLUMNS, *RANKING_COLUMNS):
            table.add_column(column, justify="left" if column == "field" else "right")
        for field in (ALL_FIELDS, *searched_fields(record.metrics)):
            table.add_row(field, *field_cells(field_metrics(record.metrics, field)))
        Console().print(table)


def fields_markdown(rows: Sequence[ComparisonRow]) -> str:
    """A markdown section with every attributes row per field and the nDCG@10 change over its base
    model, or nothing when no run evaluated attributes."""
    attribute_rows = [row for row in rows if row.record.protocol == "attributes"]
    if not attribute_rows:
        return ""
    header = ("run", "model", "stage", "field", *COUNT_COLUMNS, *RANKING_COLUMNS, "vs_base")
    lines = [
        f"## Attribute search by field (vs_base: {GAIN_METRIC} over the same base model)",
        "",
        f"| {' | '.join(header)} |",
        f"|{'---|' * len(header)}",
    ]
    for row in attribute_rows:
        for field in (ALL_FIELDS, *searched_fields(row.record.metrics)):
            values = field_metrics(row.record.metrics, field)
            reference = field_metrics(row.base.metrics, field) if row.base else {}
            gain = relative_gain(values.get(GAIN_METRIC), reference.get(GAIN_METRIC))
            ids = [row.run, row.record.model, row.record.stage, field]
            lines.append(f"| {' | '.join([*ids, *field_cells(values), format_gain(gain)])} |")
    return "\n".join(lines) + "\n"
