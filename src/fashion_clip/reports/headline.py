"""The one number a protocol is ranked by: mean recall for retrieval, top-1 for classification, nDCG@10
for attribute search; the comparison's gains, its chart and the category tables all use it."""

from __future__ import annotations

from collections.abc import Mapping

from fashion_clip.reports.results_file import EvaluationRecord

HEADLINES = {"mean_recall": "mean recall", "top1": "top-1 accuracy", "ndcg10": "nDCG@10"}


def headline_metric(metrics: Mapping[str, float]) -> str | None:
    """The headline key among `metrics` (a protocol's totals or one category's), or None."""
    return next((name for name in HEADLINES if name in metrics), None)


def headline(record: EvaluationRecord) -> float | None:
    """The record's headline value (see HEADLINES)."""
    name = headline_metric(record.metrics)
    return None if name is None else record.metrics[name]
