"""Gather evaluation records from many runs into one comparison, each row against its own base model."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fashion_clip.errors import MissingInputError
from fashion_clip.evaluation.results_file import BASE, RESULTS_NAME, EvaluationRecord, read_results
from fashion_clip.evaluation.results_table import METRIC_COLUMNS, format_metric

ID_COLUMNS = ("run", "model", "loss", "data", "split", "stage", "protocol")


# the one number a protocol is ranked by: mean recall for retrieval, top-1 for classification, nDCG@10
# for attribute search
HEADLINES = {"mean_recall": "mean recall", "top1": "top-1 accuracy", "ndcg10": "nDCG@10"}


def headline_metric(metrics: Mapping[str, float]) -> str | None:
    """The headline key among `metrics` (a protocol's totals or one category's), or None."""
    return next((name for name in HEADLINES if name in metrics), None)


def headline(record: EvaluationRecord) -> float | None:
    """The record's headline value (see HEADLINES)."""
    name = headline_metric(record.metrics)
    return None if name is None else record.metrics[name]


@dataclass(frozen=True)
class ComparisonRow:
    """One evaluated (run, protocol) with its relative gain over the same base model."""

    run: str
    record: EvaluationRecord
    gain: float | None
    # the base evaluation the gain is measured against, for gains of other metrics than the headline
    base: EvaluationRecord | None = None

    def cells(self) -> list[str]:
        """Text cells in `columns()` order, for markdown and CSV alike."""
        r = self.record
        ids = [self.run, r.model, r.loss or "-", r.data, r.split, r.stage, r.protocol]
        metrics = [format_metric(r.metrics.get(c)) for c in METRIC_COLUMNS]
        return ids + metrics + [format_gain(self.gain)]


def columns() -> list[str]:
    """Header shared by every output format."""
    return [*ID_COLUMNS, *METRIC_COLUMNS, "vs_base"]


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


def _run_label(source: str, root: Path) -> str:
    """The run's directory relative to the common root, short enough for a table cell."""
    run_dir = Path(source).parent
    return str(run_dir.relative_to(root)) if run_dir != root else run_dir.name


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
    root = Path(os.path.commonpath([Path(r.source).parent.resolve() for r in records]))
    bases = [r for r in records if r.stage == BASE]
    rows = []
    for r in records:
        base = None if r.stage == BASE else _base_for(r, bases)
        rows.append(ComparisonRow(_run_label(str(Path(r.source).resolve()), root), r, _gain(r, base), base))
    return sorted(
        rows, key=lambda row: (row.record.protocol, row.record.model, row.record.loss or "", row.run)
    )


def gather(paths: Sequence[str | Path]) -> list[ComparisonRow]:
    """Read every results file under `paths` and compare them."""
    return compare(record for path in find_results(paths) for record in read_results(path))


def to_markdown(rows: Sequence[ComparisonRow]) -> str:
    """GitHub table, the format people paste into papers' appendices and PRs."""
    header = columns()
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return "\n".join(lines + [f"| {' | '.join(row.cells())} |" for row in rows]) + "\n"


def to_csv(rows: Sequence[ComparisonRow]) -> str:
    """CSV for spreadsheets and pandas."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns())
    writer.writerows(row.cells() for row in rows)
    return buffer.getvalue()
