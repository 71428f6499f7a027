"""Per-category metrics stored beside a protocol's totals (`by_category/<category>/<metric>` keys), so the
results file, the report and the run directory's tables all read them from the same record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fashion_clip.evaluation.embedded_split import ImageRecord

PREFIX = "by_category/"

Breakdown = dict[str, dict[str, float]]


def product_categories(images: Sequence[ImageRecord]) -> dict[str, str]:
    """Each product's first non-empty category: a caption query belongs to its product's category."""
    categories: dict[str, str] = {}
    for record in images:
        if record.category:
            categories.setdefault(record.product_id, record.category)
    return categories


def group_means(
    categories: Sequence[str | None], columns: Mapping[str, torch.Tensor], count_name: str
) -> Breakdown:
    """Mean of each per-query column within each category, with the category's query count as
    `count_name`; queries without a category are left out."""
    groups: dict[str, list[int]] = {}
    for row, category in enumerate(categories):
        if category:
            groups.setdefault(category, []).append(row)
    breakdown: Breakdown = {}
    for category in sorted(groups):
        rows = torch.tensor(groups[category])
        values = {name: float(column[rows].double().mean()) for name, column in columns.items()}
        breakdown[category] = {count_name: float(len(rows))} | values
    return breakdown


def flatten(breakdown: Breakdown) -> dict[str, float]:
    """Keys for a flat metrics dict: `by_category/<category>/<metric>`."""
    return {
        f"{PREFIX}{category}/{name}": value
        for category, values in breakdown.items()
        for name, value in values.items()
    }


def unflatten(metrics: Mapping[str, float]) -> Breakdown:
    """The per-category part of a metrics dict, categories in stored order (a category may contain '/')."""
    breakdown: Breakdown = {}
    for key, value in metrics.items():
        if key.startswith(PREFIX):
            category, name = key[len(PREFIX) :].rsplit("/", 1)
            breakdown.setdefault(category, {})[name] = value
    return breakdown
