"""The `attributes` protocol: every value of a product metadata field ("red", "wool", "dress") becomes a
text query against the split's products, as Marqo's fashion benchmarks score attribute search; each
query's ranking is scored by P@1, P@10, MRR, nDCG@10 and mAP@10 (torchmetrics' retrieval metrics), and on
request by trec_eval's AP@10 (`map10_trec`)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import open_clip
import torch
import torch.nn.functional as F
from torchmetrics.retrieval import (
    RetrievalMAP,
    RetrievalMRR,
    RetrievalNormalizedDCG,
    RetrievalPrecision,
    RetrievalRecall,
)
from torchmetrics.retrieval.base import RetrievalMetric

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.zeroshot import check_templates, class_embeddings
from fashion_clip.records import flatten
from fashion_clip.retrieval.embedding import EmbeddedSplit

log = logging.getLogger(__name__)

TOP_K = 10
METRICS = {
    "p1": (RetrievalPrecision, 1),
    "p10": (RetrievalPrecision, TOP_K),
    "mrr": (RetrievalMRR, None),
    "ndcg10": (RetrievalNormalizedDCG, TOP_K),
    "map10": (RetrievalMAP, TOP_K),
}
# trec_eval's (and beir's) AP@10: the precisions at the relevant items in the top 10 divided by every
# relevant item, where `map10` divides by those found in the top 10
TREC_MAP = "map10_trec"


def keep_rows(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """torchmetrics aggregation that returns every query's value, so fields and categories can be averaged
    from the same numbers."""
    return values


def per_query(
    metric: RetrievalMetric, preds: torch.Tensor, target: torch.Tensor, indexes: torch.Tensor
) -> torch.Tensor:
    """A torchmetrics retrieval metric's value for every query (it squeezes a single query's value)."""
    metric.update(preds, target, indexes=indexes)
    return metric.compute().reshape(-1)


def ranking_metrics(
    scores: torch.Tensor, relevant: torch.Tensor, trec_map: bool = False
) -> dict[str, torch.Tensor]:
    """Each metric of `METRICS` for every query row of (Q, N) `scores` against (Q, N) bool `relevant`, and
    with `trec_map` trec_eval's AP@10 as `map10_trec`.

    torchmetrics counts an item whose score is not positive as never retrieved, so scores are shifted
    (in float64, which keeps every row's order) to start at 1. P@10 divides by 10 even when a query has fewer
    relevant items; mAP@10 averages the precision at each relevant item within the top 10; MRR looks
    at the whole ranking. trec_eval's AP@10 is mAP@10 times Recall@10 (found / all relevant): the same
    precisions summed, divided by every relevant item.
    """
    if scores.shape != relevant.shape or scores.ndim != 2:
        shapes = f"{tuple(scores.shape)} and {tuple(relevant.shape)}"
        raise ValueError(f"scores and relevant must both be (Q, N), got {shapes}")
    scores = scores.double()  # float64, so the shift cannot merge two nearly equal float32 scores
    preds = (scores - scores.min() + 1.0).cpu().flatten()
    target = relevant.bool().cpu().flatten()
    indexes = torch.arange(scores.shape[0]).repeat_interleave(scores.shape[1])
    results = {
        name: per_query(metric_class(top_k=top_k, aggregation=keep_rows), preds, target, indexes)
        for name, (metric_class, top_k) in METRICS.items()
    }
    if trec_map:
        recall = per_query(RetrievalRecall(top_k=TOP_K, aggregation=keep_rows), preds, target, indexes)
        results[TREC_MAP] = results["map10"] * recall
    return results


Tokenizer = Callable[[list[str]], torch.Tensor]
ScoreFn = Callable[[torch.Tensor], torch.Tensor]
KEY = "protocol.attributes"
DEFAULT_FIELDS = ("category", "subcategory", "colour", "color", "material", "pattern")
DEFAULT_TEMPLATES = ("a photo of {}", "{}", "a {} product")
PRODUCT_EMBEDDINGS = ("mean", "best")
# the field whose per-value results are also the per-category breakdown
CATEGORY_FIELD = "category"


@dataclass(frozen=True)
class Products:
    """The split's products in first-seen image order: each image's product index and each product's
    metadata (a field's first non-empty value among the product's images)."""

    image_products: torch.Tensor
    metadata: list[dict[str, str]]

    @classmethod
    def of(cls, split: EmbeddedSplit) -> Products:
        """Group the split's images by product id."""
        index: dict[str, int] = {}
        metadata: list[dict[str, str]] = []
        rows = []
        attributes = split.attributes or [{}] * len(split.images)  # a split read without metadata
        for record, fields in zip(split.images, attributes, strict=True):
            if record.product_id not in index:
                index[record.product_id] = len(metadata)
                metadata.append({})
            rows.append(index[record.product_id])
            for name, value in fields.items():
                metadata[index[record.product_id]].setdefault(name, value)
        return cls(torch.tensor(rows, dtype=torch.long), metadata)

    def values(self, field: str) -> list[str | None]:
        """Each product's value of `field` (None where it has none)."""
        return [fields.get(field) for fields in self.metadata]


def search_fields(available: set[str], extra: Sequence[str]) -> list[str]:
    """The default fields the samples have plus every field asked for; a field no sample has, or a
    split with no metadata to search, is a config error naming the key to change."""
    extra = [extra] if isinstance(extra, str) else list(extra)
    missing = [name for name in extra if name not in available]
    found = ", ".join(sorted(available)) or "no text field"
    if missing:
        raise ConfigError(
            f"{KEY}.fields: no sample of the split has the field(s) {', '.join(map(repr, missing))} in its "
            f".json (the samples have: {found}); fix the name or remove it from {KEY}.fields"
        )
    fields = [name for name in DEFAULT_FIELDS if name in available]
    fields += [name for name in extra if name not in fields]
    if not fields:
        raise ConfigError(
            f"{KEY}: the split has no metadata to search: no sample's .json has any of "
            f"{', '.join(DEFAULT_FIELDS)} (the samples have: {found}); add them to the samples' json, name "
            f"the fields to search in {KEY}.fields, or leave attributes out of `protocol`"
        )
    return fields


def field_queries(values: Sequence[str | None], cap: int) -> list[str]:
    """The field's distinct values, most frequent first (ties by name), at most `cap` of them."""
    counts = Counter(value for value in values if value)
    return sorted(counts, key=lambda value: (-counts[value], value))[:cap]


def product_scores(
    text: torch.Tensor, image_features: torch.Tensor, products: Products, product_embedding: str
) -> torch.Tensor:
    """(Q, P) similarity of each query to each product: to its normalised mean image embedding (`mean`)
    or to its best-matching image (`best`)."""
    num_products = len(products.metadata)
    image_products = products.image_products.to(image_features.device)
    if product_embedding == "mean":
        sums = torch.zeros(num_products, image_features.shape[1], device=image_features.device)
        return text @ F.normalize(sums.index_add_(0, image_products, image_features), dim=-1).T
    image_scores = text @ image_features.T
    best = torch.full((text.shape[0], num_products), -torch.inf, device=text.device)
    return best.scatter_reduce_(1, image_products.expand_as(image_scores), image_scores, "amax")


def check_options(product_embedding: str, max_queries_per_field: int, trec_map: bool) -> None:
    """Reject bad options with the key to change, before any text is encoded."""
    if not isinstance(trec_map, bool):
        raise ConfigError(f"{KEY}.trec_map must be true or false, got {trec_map!r}")
    if product_embedding not in PRODUCT_EMBEDDINGS:
        raise ConfigError(
            f"{KEY}.product_embedding={product_embedding!r} is not one of {', '.join(PRODUCT_EMBEDDINGS)}"
        )
    if isinstance(max_queries_per_field, bool) or not isinstance(max_queries_per_field, int):
        raise ConfigError(f"{KEY}.max_queries_per_field must be an integer, got {max_queries_per_field!r}")
    if max_queries_per_field < 1:
        raise ConfigError(f"{KEY}.max_queries_per_field must be at least 1, got {max_queries_per_field}")


def mean_metrics(per_query: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each metric averaged over the queries."""
    return {name: float(values.double().mean()) for name, values in per_query.items()}


def value_breakdown(
    queries: list[str], relevant: torch.Tensor, per_query: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Each value's own results (with its number of relevant products), flattened as per-category keys."""
    return flatten(
        {
            query: {"products": float(relevant[row].sum())}
            | {metric: float(values[row]) for metric, values in per_query.items()}
            for row, query in enumerate(queries)
        }
    )


@dataclass(frozen=True)
class FieldSearch:
    """One field's value queries ranked against the products that have the field."""

    queries: list[str]
    relevant: torch.Tensor
    per_query: dict[str, torch.Tensor]


def search_field(
    values: list[str | None],
    text_of: Callable[[list[str]], torch.Tensor],
    scores_of: ScoreFn,
    cap: int,
    trec_map: bool = False,
) -> FieldSearch:
    """Rank the products having the field for each of its (capped) values; relevant = same value."""
    queries = field_queries(values, cap)
    gallery = [i for i, value in enumerate(values) if value]
    codes = {query: code for code, query in enumerate(queries)}
    gallery_codes = torch.tensor([codes.get(values[i], -1) for i in gallery])
    relevant = gallery_codes[None, :] == torch.arange(len(queries))[:, None]
    scores = scores_of(text_of(queries))[:, torch.tensor(gallery)]
    return FieldSearch(queries, relevant, ranking_metrics(scores, relevant, trec_map))


@torch.inference_mode()
def attribute_search(
    split: EmbeddedSplit,
    model: open_clip.CLIP,
    tokenizer: Tokenizer,
    fields: Sequence[str] = (),
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    product_embedding: str = "mean",
    max_queries_per_field: int = 100,
    trec_map: bool = False,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """P@1, P@10, MRR, nDCG@10 and mAP@10 of value queries against products, per field and overall, and
    with `trec_map` trec_eval's AP@10 beside them (`map10_trec`; `map10` keeps its definition).

    A field's gallery is the products that have the field; a query's relevant products are those with
    its value. Its text embedding is the mean of its prompts (`templates`), as zero-shot class names.
    A value is the json's value as the pages show it (`utils.metadata_text`, applied by the catalogue
    reader): a number as written, a boolean `true`/`false`, an object compact json, and a list its items
    joined with ", " in stored order; a list is one value, so `["red", "blue"]` is the query "red, blue"
    and is relevant to products listing exactly red, blue, never to a product that is only "red".
    Overall numbers average over every query of every searched field; a field with fewer than 2 values
    is skipped (logged; its `<field>/values` is kept). The `category` field's per-value results are
    also stored as the per-category breakdown. `model` is moved to `device` and put in eval mode.
    """
    check_options(product_embedding, max_queries_per_field, trec_map)
    templates = check_templates(templates, f"{KEY}.templates")
    products = Products.of(split)
    names = search_fields({name for fields in products.metadata for name in fields}, fields)
    device = torch.device(device)
    model.eval().to(device)
    image_features = split.image_features.to(device).float()

    def text_of(queries: list[str]) -> torch.Tensor:
        """(Q, D) prompt-averaged unit-norm embeddings of the values."""
        return class_embeddings(model, tokenizer, queries, templates, device).T

    def scores_of(text: torch.Tensor) -> torch.Tensor:
        """(Q, P) query-to-product similarities on the CPU."""
        return product_scores(text, image_features, products, product_embedding).cpu()

    metrics: dict[str, float] = {}
    pooled: dict[str, list[torch.Tensor]] = {}
    for name in names:
        values = products.values(name)
        metrics[f"{name}/values"] = len(set(filter(None, values)))
        if metrics[f"{name}/values"] < 2:
            log.warning("%s: field %r has fewer than 2 distinct values: skipped", KEY, name)
            continue
        result = search_field(values, text_of, scores_of, max_queries_per_field, trec_map)
        metrics |= {f"{name}/{metric}": value for metric, value in mean_metrics(result.per_query).items()}
        metrics[f"{name}/queries"] = len(result.queries)
        for metric, rows in result.per_query.items():
            pooled.setdefault(metric, []).append(rows)
        if name == CATEGORY_FIELD:
            metrics |= value_breakdown(result.queries, result.relevant, result.per_query)
    searched = [name for name in names if f"{name}/queries" in metrics]
    if not searched:
        counts = ", ".join(f"{name}: {metrics[f'{name}/values']:g}" for name in names)
        raise ConfigError(
            f"{KEY}: no field has 2 or more distinct values ({counts}), so there is nothing to rank; "
            f"evaluate a larger split or name other fields in {KEY}.fields"
        )
    totals = {
        "queries": sum(metrics[f"{name}/queries"] for name in searched),
        "products": len(products.metadata),
        "fields": len(searched),
        "fields_skipped": len(names) - len(searched),
    }
    return mean_metrics({metric: torch.cat(rows) for metric, rows in pooled.items()}) | totals | metrics
