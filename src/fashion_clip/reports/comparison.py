"""Gather evaluation records from many runs into one comparison, each row against its own base model."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fashion_clip.errors import MissingInputError
from fashion_clip.reports.headline import headline
from fashion_clip.reports.metric_columns import format_metric, metric_columns
from fashion_clip.reports.results_file import BASE, RESULTS_NAME, EvaluationRecord, read_results
from fashion_clip.reports.run_labels import run_labels

ID_COLUMNS = ("run", "model", "loss", "data", "split", "stage", "protocol")


@dataclass(frozen=True)
class ComparisonRow:
    """One evaluated (run, protocol) with its relative gain over the same base model."""

    run: str
    record: EvaluationRecord
    gain: float | None
    # the base evaluation the gain is measured against, for gains of other metrics than the headline
    base: EvaluationRecord | None = None

    def cells(self, metrics: Sequence[str]) -> list[str]:
        """Text cells in `columns(metrics)` order, for markdown and CSV alike."""
        r = self.record
        ids = [self.run, r.model, r.loss or "-", r.data, r.split, r.stage, r.protocol]
        return ids + [format_metric(r.metrics.get(c)) for c in metrics] + [format_gain(self.gain)]


def row_metrics(rows: Sequence[ComparisonRow]) -> tuple[str, ...]:
    """The metric columns of these rows: recall at the ks their runs were evaluated at, then the rest."""
    return metric_columns(name for row in rows for name in row.record.metrics)


def columns(metrics: Sequence[str]) -> list[str]:
    """Header shared by every output format."""
    return [*ID_COLUMNS, *metrics, "vs_base"]


def find_results(paths: Sequence[str | Path]) -> list[Path]:
    """Every results file under the given run or sweep directories (or the files themselves), sorted."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(path.rglob(RESULTS_NAME)))
        else:
            raise MissingInputError(f"'{path}' does not exist (give run or sweep directories under outputs/)")
    if not found:
        raise MissingInputError(
            f"no {RESULTS_NAME} under {', '.join(map(str, paths))}: run `python -m fashion_clip.evaluate` "
            f"or a training run first"
        )
    return found


def run_dir(record: EvaluationRecord) -> Path:
    """The directory of the run that wrote the record."""
    return Path(record.source).resolve().parent


def _base_for(record: EvaluationRecord, bases: list[EvaluationRecord]) -> EvaluationRecord | None:
    """The same model's base evaluation: from the same run (train writes both), else a standalone one."""
    same = sorted((b for b in bases if b.base_key() == record.base_key()), key=lambda b: b.loss is not None)
    same_run = [b for b in same if Path(b.source).parent == Path(record.source).parent]
    return (same_run or same or [None])[0]


def relative_gain(value: float | None, reference: float | None) -> float | None:
    """value / reference - 1, or None where either is missing or the reference is zero."""
    return None if value is None or not reference else value / reference - 1.0


def format_gain(gain: float | None) -> str:
    """A signed percentage, or a dash where there is no gain."""
    return "-" if gain is None else f"{gain:+.1%}"


def _gain(record: EvaluationRecord, base: EvaluationRecord | None) -> float | None:
    """Relative improvement of the headline metric; undefined for base rows and a zero baseline."""
    if record.stage == BASE or base is None:
        return None
    return relative_gain(headline(record), headline(base))


def compare(records: Iterable[EvaluationRecord]) -> list[ComparisonRow]:
    """Rows sorted by protocol, then model and loss, so like-for-like runs sit together."""
    records = list(records)
    labels = run_labels(run_dir(r) for r in records)
    bases = [r for r in records if r.stage == BASE]
    rows = []
    for r in records:
        base = None if r.stage == BASE else _base_for(r, bases)
        rows.append(ComparisonRow(labels[run_dir(r)], r, _gain(r, base), base))
    return sorted(
        rows, key=lambda row: (row.record.protocol, row.record.model, row.record.loss or "", row.run)
    )


def gather(paths: Sequence[str | Path]) -> list[ComparisonRow]:
    """Read every results file under `paths` and compare them."""
    return compare(record for path in find_results(paths) for record in read_results(path))


def to_markdown(rows: Sequence[ComparisonRow]) -> str:
    """GitHub table, the format people paste into papers' appendices and PRs."""
    metrics = row_metrics(rows)
    header = columns(metrics)
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return "\n".join(lines + [f"| {' | '.join(row.cells(metrics))} |" for row in rows]) + "\n"


def to_csv(rows: Sequence[ComparisonRow]) -> str:
    """CSV for spreadsheets and pandas."""
    metrics = row_metrics(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns(metrics))
    writer.writerows(row.cells(metrics) for row in rows)
    return buffer.getvalue()
