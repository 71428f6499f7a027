"""P@1, P@10, MRR, nDCG@10 and mAP@10 of each query's ranking, from torchmetrics' retrieval metrics."""

from __future__ import annotations

import torch
from torchmetrics.retrieval import (
    RetrievalMAP,
    RetrievalMRR,
    RetrievalNormalizedDCG,
    RetrievalPrecision,
)

TOP_K = 10
METRICS = {
    "p1": (RetrievalPrecision, 1),
    "p10": (RetrievalPrecision, TOP_K),
    "mrr": (RetrievalMRR, None),
    "ndcg10": (RetrievalNormalizedDCG, TOP_K),
    "map10": (RetrievalMAP, TOP_K),
}


def keep_rows(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """torchmetrics aggregation that returns every query's value, so fields and categories can be averaged
    from the same numbers."""
    return values


def ranking_metrics(scores: torch.Tensor, relevant: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each metric of `METRICS` for every query row of (Q, N) `scores` against (Q, N) bool `relevant`.

    torchmetrics counts an item whose score is not positive as never retrieved, so scores are shifted
    (in float64, which keeps every row's order) to start at 1. P@10 divides by 10 even when a query has fewer
    relevant items; mAP@10 averages the precision at each relevant item within the top 10; MRR looks
    at the whole ranking.
    """
    if scores.shape != relevant.shape or scores.ndim != 2:
        shapes = f"{tuple(scores.shape)} and {tuple(relevant.shape)}"
        raise ValueError(f"scores and relevant must both be (Q, N), got {shapes}")
    scores = scores.double()  # float64, so the shift cannot merge two nearly equal float32 scores
    preds = (scores - scores.min() + 1.0).cpu().flatten()
    target = relevant.bool().cpu().flatten()
    indexes = torch.arange(scores.shape[0]).repeat_interleave(scores.shape[1])
    results = {}
    for name, (metric_class, top_k) in METRICS.items():
        metric = metric_class(top_k=top_k, aggregation=keep_rows)
        metric.update(preds, target, indexes=indexes)
        results[name] = metric.compute().reshape(-1)  # torchmetrics squeezes a single query's value
    return results
