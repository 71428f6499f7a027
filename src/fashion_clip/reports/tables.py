"""The tables of one run: the metric columns (recall at the configured ks, then classification and
ranking) and the headline number a protocol is ranked by, the printed results table, the training run's
before/after table, attribute search per field, the per-category tables and charts
(`categories_<protocol>.{md,png}`) and the hyperparameters TensorBoard's HPARAMS tab compares."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from fashion_clip.records import BASE, FINETUNED, Breakdown, EvaluationRecord, unflatten
from fashion_clip.utils.files import atomic_output
from fashion_clip.utils.metadata_text import markdown_cell

if TYPE_CHECKING:  # the comparison report imports these tables and runs without torch
    import lightning as L

matplotlib.use("Agg")  # headless: evaluations run on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402

RECALL_DIRECTIONS = ("i2t", "t2i")
RECALL_KEY = re.compile(r"^(?:i2t|t2i)_r(\d+)$")
MEAN_RECALL = "mean_recall"
CLASSIFICATION_COLUMNS = ("top1", "top5")
RANKING_COLUMNS = ("p1", "p10", "mrr", "ndcg10", "map10")


def recall_ks(metric_names: Iterable[str]) -> tuple[int, ...]:
    """The ks of the recall keys among `metric_names`, ascending, so tables show whatever ks were set."""
    return tuple(sorted({int(match[1]) for name in metric_names if (match := RECALL_KEY.match(name))}))


def recall_columns(ks: Sequence[int]) -> tuple[str, ...]:
    """Image-to-text recall at each k, then text-to-image, then their mean; none without ks."""
    if not ks:
        return ()
    return (*(f"{direction}_r{k}" for direction in RECALL_DIRECTIONS for k in ks), MEAN_RECALL)


def metric_columns(metric_names: Iterable[str]) -> tuple[str, ...]:
    """Every metric column of a table over records with these metric names."""
    return recall_columns(recall_ks(metric_names)) + CLASSIFICATION_COLUMNS + RANKING_COLUMNS


def format_metric(value: float | None) -> str:
    """Four decimals, or a dash where a protocol has no such metric (e.g. recall for zeroshot)."""
    return "-" if value is None else f"{value:.4f}"


HEADLINES = {"mean_recall": "mean recall", "top1": "top-1 accuracy", "ndcg10": "nDCG@10"}


def headline_metric(metrics: Mapping[str, float]) -> str | None:
    """The headline key among `metrics` (a protocol's totals or one category's), or None."""
    return next((name for name in HEADLINES if name in metrics), None)


def headline(record: EvaluationRecord) -> float | None:
    """The record's headline value (see HEADLINES)."""
    name = headline_metric(record.metrics)
    return None if name is None else record.metrics[name]


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


ALL_FIELDS = "(all)"
COUNT_COLUMNS = ("values", "queries")


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


COUNT_NAMES = ("images", "captions", "products")
STEM = "categories"


def worst_first(breakdown: Breakdown, metric: str) -> list[str]:
    """Categories by ascending `metric`, ties by name, so the ones to fix lead the table and the chart."""
    return sorted(breakdown, key=lambda category: (breakdown[category].get(metric, 0.0), category))


def cell(name: str, value: float | None) -> str:
    """Counts as integers, metrics with four decimals, a dash where a stage has no such number."""
    if value is None:
        return "-"
    return f"{value:.0f}" if name in COUNT_NAMES else f"{value:.4f}"


def category_markdown(protocol: str, shown: Breakdown, base: Breakdown, metric: str) -> str:
    """The table: the evaluated model's numbers per category and, with a base, its headline and change."""
    names = list(dict.fromkeys(name for values in shown.values() for name in values))
    names.sort(key=lambda name: name not in COUNT_NAMES)  # counts first, each group in stored order
    extra = [f"{metric} (base)", "change"] if base else []
    header = ["category", *names, *extra]
    lines = [
        f"## {protocol}: per query category, worst {HEADLINES[metric]} first",
        "",
        f"| {' | '.join(header)} |",
        f"|{'---|' * len(header)}",
    ]
    for category in worst_first(shown, metric):
        cells = [cell(name, shown[category].get(name)) for name in names]
        if base:
            before, after = base.get(category, {}).get(metric), shown[category].get(metric)
            change = "-" if before is None or after is None else f"{after - before:+.4f}"
            cells += [cell(metric, before), change]
        lines.append(f"| {' | '.join([markdown_cell(category), *cells])} |")
    return "\n".join(lines) + "\n"


def plot_categories(
    protocol: str, shown: Breakdown, base: Breakdown, metric: str, label: str, out: Path
) -> Path:
    """Horizontal bars of the headline per category, worst at the top; the base model's in grey beside."""
    categories = worst_first(shown, metric)
    height = 0.8 / (2 if base else 1)
    figure, axis = plt.subplots(figsize=(8, 1.2 + 0.32 * len(categories) * (2 if base else 1)))
    positions = range(len(categories))
    values = [shown[c].get(metric, 0.0) for c in categories]
    offsets = [p + (height / 2 if base else 0) for p in positions]
    axis.barh(offsets, values, height, color="#1f77b4", label=label)
    for y, value in zip(offsets, values, strict=True):
        axis.text(min(value + 0.01, 0.9), y, f"{value:.3f}", va="center", fontsize=7)
    if base:
        before = [base.get(c, {}).get(metric, 0.0) for c in categories]
        axis.barh([p - height / 2 for p in positions], before, height, color="#9e9e9e", label=BASE)
        axis.legend(loc="lower right", fontsize=8)
    axis.set_yticks(list(positions), categories, fontsize=8, parse_math=False)  # '$5-$10' is a name
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_title(f"{protocol}: {HEADLINES[metric]} per category (worst first)", loc="left")
    figure.tight_layout()
    with atomic_output(out) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return out


def write_category_reports(records: Sequence[EvaluationRecord], out_dir: str | Path) -> list[Path]:
    """For each protocol whose last record has a per-category breakdown, its table and chart; the run's
    base record of that protocol (train evaluates before and after) is shown beside it."""
    written = []
    for protocol in dict.fromkeys(r.protocol for r in records):
        same = [r for r in records if r.protocol == protocol]
        shown, metric = unflatten(same[-1].metrics), headline_metric(same[-1].metrics)
        if not shown or metric is None:
            continue
        base_record = next((r for r in same[:-1] if r.stage == BASE), None)
        base = unflatten(base_record.metrics) if base_record else {}
        out = Path(out_dir) / f"{STEM}_{protocol}"
        with atomic_output(out.with_suffix(".md")) as tmp:
            tmp.write_text(category_markdown(protocol, shown, base, metric))
        png = plot_categories(protocol, shown, base, metric, same[-1].stage, out.with_suffix(".png"))
        written += [out.with_suffix(".md"), png]
    return written


def log_hyperparameters(trainer: L.Trainer, cfg: DictConfig, module: L.LightningModule) -> None:
    """The whole resolved config plus parameter counts, so TensorBoard's HPARAMS tab can compare runs."""
    params = dict(OmegaConf.to_container(cfg, resolve=True))
    params.pop("paths", None)
    params["params/total"] = sum(p.numel() for p in module.parameters())
    params["params/trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    for logger in trainer.loggers:
        logger.log_hyperparams(params)
