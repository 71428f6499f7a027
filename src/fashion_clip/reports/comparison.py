"""The comparison of many runs: every results file under the given run or sweep directories, each
record against its own base model, a run labelled by its directory (a multirun job by the overrides that
differ between the compared jobs), attribute search by field and the mean over seeds; printed, and
written as comparison.{md,csv,png}."""

from __future__ import annotations

import csv
import io
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import matplotlib
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from rich.console import Console
from rich.table import Table

from fashion_clip.errors import MissingInputError
from fashion_clip.records import BASE, RESULTS_NAME, EvaluationRecord, read_results
from fashion_clip.reports.leaderboard import write_leaderboard
from fashion_clip.reports.tables import (
    ALL_FIELDS,
    COUNT_COLUMNS,
    HEADLINES,
    RANKING_COLUMNS,
    field_cells,
    field_metrics,
    format_metric,
    headline,
    headline_metric,
    metric_columns,
    searched_fields,
)
from fashion_clip.utils.files import atomic_output

matplotlib.use("Agg")  # headless: reports are made on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402

SAVED_HYDRA = Path(".hydra") / "hydra.yaml"
SWEEP_CONFIG = "multirun.yaml"


@dataclass(frozen=True)
class SweepJob:
    """A multirun job: the sweep directory it ran in, its number and its overrides as typed
    (`loss=siglip`) by the key they set."""

    sweep_dir: Path
    num: int
    overrides: Mapping[str, str]


def sweep_job(run_dir: Path) -> SweepJob | None:
    """The job Hydra saved in a multirun job's directory; None for single runs and unknown directories."""
    saved = run_dir / SAVED_HYDRA
    sweep_dir = next((d for d in run_dir.parents if (d / SWEEP_CONFIG).is_file()), None)
    if sweep_dir is None or not saved.is_file():
        return None
    hydra = yaml.safe_load(saved.read_text())["hydra"]
    if hydra.get("mode") != "MULTIRUN":
        return None
    parsed = OverridesParser.create().parse_overrides(hydra["overrides"]["task"])
    return SweepJob(sweep_dir, hydra["job"]["num"], {o.key_or_group: o.input_line for o in parsed})


def swept_keys(jobs: Iterable[SweepJob]) -> set[str]:
    """Keys whose override is not the same in every job (or missing from some): what the sweeps varied."""
    jobs = list(jobs)
    keys = {key for job in jobs for key in job.overrides}
    return {key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1}


def job_name(job: SweepJob, swept: set[str]) -> str:
    """`<num>_<swept overrides>`, sorted and comma-joined like Hydra's override_dirname."""
    shown = ",".join(sorted(line for key, line in job.overrides.items() if key in swept))
    return f"{job.num}_{shown}" if shown else str(job.num)


def run_labels(run_dirs: Iterable[Path]) -> dict[Path, str]:
    """Each run directory's label (given resolved), short enough for a table cell."""
    dirs = sorted(set(run_dirs))
    jobs = {d: job for d in dirs if (job := sweep_job(d)) is not None}
    places = {d: jobs[d].sweep_dir if d in jobs else d for d in dirs}
    root = Path(os.path.commonpath(list(places.values())))
    swept = swept_keys(jobs.values())
    labels = {}
    for d in dirs:
        if d in jobs:
            sweep_dir = jobs[d].sweep_dir
            prefix = "" if sweep_dir == root else f"{sweep_dir.relative_to(root)}/"
            labels[d] = prefix + job_name(jobs[d], swept)
        else:
            labels[d] = str(d.relative_to(root)) if d != root else d.name
    return labels


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


GAIN_METRIC = "ndcg10"


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


JOB_NUMBER = re.compile(r"^\d+(_|$)")
SEED_OVERRIDE = re.compile(r"(^|,)seed=[^,]*")
SUMMARY_COLUMNS = ("configuration", "model", "loss", "data", "stage", "protocol", "seeds", "mean", "std")


def configuration(run: str) -> str:
    """A run's job name without its job number and seed override: what its seeds have in common."""
    name = JOB_NUMBER.sub("", PurePath(run).name)
    return SEED_OVERRIDE.sub("", name).strip(",") or "(defaults)"


@dataclass(frozen=True)
class SeedSummary:
    """The headline metric of one configuration, stage and protocol over its seeds."""

    key: tuple[str, ...]
    values: tuple[float, ...]

    def cells(self) -> list[str]:
        """Text cells in SUMMARY_COLUMNS order; the spread is the sample standard deviation."""
        std = statistics.stdev(self.values) if len(self.values) > 1 else None
        spread = "-" if std is None else f"{std:.4f}"
        return [*self.key, str(len(self.values)), f"{statistics.fmean(self.values):.4f}", spread]


def summarise_seeds(rows: Sequence[ComparisonRow]) -> list[SeedSummary]:
    """One summary per (configuration, model, loss, data, stage, protocol), in the rows' order."""
    groups: dict[tuple[str, ...], list[float]] = {}
    for row in rows:
        value = headline(row.record)
        if value is None:
            continue
        r = row.record
        key = (configuration(row.run), r.model, r.loss or "-", r.data, r.stage, r.protocol)
        groups.setdefault(key, []).append(value)
    return [SeedSummary(key, tuple(values)) for key, values in groups.items()]


def seeds_markdown(summaries: Sequence[SeedSummary]) -> str:
    """A markdown table of the summaries, or nothing when no configuration ran with several seeds."""
    if all(len(s.values) < 2 for s in summaries):
        return ""
    lines = [
        "## Mean over seeds (headline metric: mean recall, top-1 for classification, nDCG@10 for attributes)",
        "",
        f"| {' | '.join(SUMMARY_COLUMNS)} |",
        f"|{'---|' * len(SUMMARY_COLUMNS)}",
    ]
    return "\n".join(lines + [f"| {' | '.join(s.cells())} |" for s in summaries]) + "\n"


RUN_LABEL_CHARS = 40


def bar_label(row: ComparisonRow) -> str:
    """Model, loss and stage identify a bar; the run directory, shortened, disambiguates repeats."""
    r = row.record
    run = row.run if len(row.run) <= RUN_LABEL_CHARS else row.run[: RUN_LABEL_CHARS - 1] + "…"
    return f"{r.model} / {r.loss or '-'} / {r.stage}\n{run}"


def plot_comparison(rows: Sequence[ComparisonRow], out: str | Path) -> Path:
    """Horizontal bars per protocol (its headline metric: mean recall, top-1, nDCG@10), saved as PNG."""
    protocols = sorted({row.record.protocol for row in rows})
    heights = [sum(1 for row in rows if row.record.protocol == p) for p in protocols]
    figure, axes = plt.subplots(
        len(protocols),
        1,
        figsize=(9, 1.2 + 0.55 * sum(heights) + 0.8 * len(protocols)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for axis, protocol in zip(axes[:, 0], protocols, strict=True):
        panel = [row for row in rows if row.record.protocol == protocol]
        values = [headline(row.record) or 0.0 for row in panel]
        colours = ["#9e9e9e" if row.record.stage == "base" else "#1f77b4" for row in panel]
        axis.barh([bar_label(row) for row in panel], values, color=colours)
        axis.invert_yaxis()
        axis.set_xlim(0, 1)
        metric = headline_metric(panel[0].record.metrics)
        axis.set_title(f"{protocol}: {HEADLINES.get(metric, 'no headline metric')}", loc="left")
        for y, value in enumerate(values):
            axis.text(min(value + 0.01, 0.9), y, f"{value:.3f}", va="center", fontsize=8)
        axis.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    with atomic_output(out) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return Path(out)


REPORT_STEM = "comparison"


def print_rows(rows: list[ComparisonRow]) -> None:
    """The comparison as a terminal table."""
    metrics = row_metrics(rows)
    table = Table(title="Evaluation comparison")
    for column in columns(metrics):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row.cells(metrics))
    Console(width=220).print(table)


def write_report(rows: list[ComparisonRow], out_dir: str | Path) -> dict[str, Path]:
    """comparison.{md,csv,png} in `out_dir`, each written to a temp name and renamed; the markdown adds
    attribute search by field when a run has it and the mean over seeds when a configuration ran with
    several."""
    out = Path(out_dir)
    sections = [to_markdown(rows), fields_markdown(rows), seeds_markdown(summarise_seeds(rows))]
    markdown = "\n".join(section for section in sections if section)
    written = {}
    for suffix, text in ((".md", markdown), (".csv", to_csv(rows))):
        written[suffix] = out / f"{REPORT_STEM}{suffix}"
        with atomic_output(written[suffix]) as tmp:
            tmp.write_text(text)
    written[".png"] = plot_comparison(rows, out / f"{REPORT_STEM}.png")
    return written


def report(paths: list[str | Path], out_dir: str | Path | None = None) -> dict[str, Path]:
    """Gather, print and write; the default output is the first directory given."""
    rows = gather(paths)
    print_rows(rows)
    for section in (fields_markdown(rows), seeds_markdown(summarise_seeds(rows))):
        if section:
            Console(width=220).print(section, markup=False)
    first = Path(paths[0])
    out = out_dir or (first if first.is_dir() else first.parent)
    written = write_report(rows, out)
    written |= {path.name: path for path in write_leaderboard([row.record for row in rows], out)}
    Console().print(f"wrote {', '.join(str(p) for p in written.values())}")
    return written
