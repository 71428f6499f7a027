"""categories_<protocol>.{md,png} in a run directory: each category's numbers, worst first, beside the base
model's when the run has both, so a team sees which categories fail and what fine-tuning changed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: evaluations run on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402

from fashion_clip.evaluation.category_breakdown import Breakdown, unflatten  # noqa: E402
from fashion_clip.reports.headline import HEADLINES, headline_metric  # noqa: E402
from fashion_clip.reports.results_file import BASE, EvaluationRecord  # noqa: E402
from fashion_clip.utils.atomic_output import atomic_output  # noqa: E402
from fashion_clip.utils.metadata_text import markdown_cell  # noqa: E402

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
