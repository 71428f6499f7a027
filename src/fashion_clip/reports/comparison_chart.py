"""Bar chart of each run's headline metric, one panel per protocol, for a quick visual comparison."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are made on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402

from fashion_clip.reports.comparison import ComparisonRow  # noqa: E402
from fashion_clip.reports.headline import HEADLINES, headline, headline_metric  # noqa: E402
from fashion_clip.utils.atomic_output import atomic_output  # noqa: E402

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
