"""Metric columns of the results tables: recall at the ks the metrics were computed at (the `i2t_r{k}` and
`t2i_r{k}` keys written from the configured `ks`), then classification and attribute-search ranking."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

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
