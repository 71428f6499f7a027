"""protocol=attributes: ranking metrics against hand-computed values, the protocol against a brute-force
ranking, field discovery, skipping, caps and the messages for bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.attributes import attribute_search, ranking_metrics
from fashion_clip.records import unflatten
from fashion_clip.retrieval.embedding import EmbeddedSplit, ImageRecord

DIM = 8
TEMPLATES = ("a photo of {}", "{}")


class WordTextModel(nn.Module):
    """Text tower stand-in: every prompt embeds to a fixed random row of its own, so the protocol's
    template-averaged value embeddings can be recomputed in the test."""

    def __init__(self, prompts: list[str], table: torch.Tensor | None = None) -> None:
        super().__init__()
        self.prompts = prompts
        if table is None:
            table = torch.randn(len(prompts), DIM, generator=torch.Generator().manual_seed(0))
        self.register_buffer("table", table)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Row index of each prompt."""
        return torch.tensor([self.prompts.index(t) for t in texts])

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """The prompts' rows, unit-norm when asked, as open_clip's encode_text."""
        rows = self.table[tokens]
        return F.normalize(rows, dim=-1) if normalize else rows

    def value_embedding(self, value: str, templates: tuple[str, ...] = TEMPLATES) -> torch.Tensor:
        """What the protocol should use for a value: the unit-norm mean of its unit-norm prompts."""
        rows = self.encode_text(self.tokenize([t.format(value) for t in templates]), normalize=True)
        return F.normalize(rows.mean(dim=0), dim=0)


def text_model(values: list[str], templates: tuple[str, ...] = TEMPLATES) -> WordTextModel:
    """A model knowing every prompt of `values`."""
    return WordTextModel([t.format(v) for v in values for t in templates])


def catalogue(products: list[dict[str, str]], views: list[int], seed: int = 1) -> EmbeddedSplit:
    """A split of random unit image features: product i has views[i] images and metadata products[i]."""
    images, attributes = [], []
    for i, (meta, count) in enumerate(zip(products, views, strict=True)):
        for v in range(count):
            images.append(ImageRecord(f"p{i}-{v}", f"p{i}", meta.get("category"), f"caption {i}", "x.tar"))
            attributes.append(dict(meta))
    features = F.normalize(
        torch.randn(len(images), DIM, generator=torch.Generator().manual_seed(seed)), dim=-1
    )
    return EmbeddedSplit(features, images, torch.zeros(0, DIM), [], attributes=attributes)


# --- the metrics, by hand


def test_ranking_metrics_match_hand_computed_values() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6], [-0.5, -0.1, -0.9, -0.2]])
    relevant = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 0]]).bool()
    result = ranking_metrics(scores, relevant)
    # query 0 ranks items 0,1,2,3: relevant at ranks 1 and 3
    #   P@1 = 1; P@10 = 2/10; MRR = 1/1; nDCG@10 = (1 + 1/log2(4)) / (1 + 1/log2(3)); mAP@10 = (1/1 + 2/3) / 2
    # query 1 ranks items 1,3,0,2 (negative scores must still rank): its relevant item 0 at rank 3
    #   P@1 = 0; P@10 = 1/10; MRR = 1/3; nDCG@10 = (1/log2(4)) / 1; mAP@10 = 1/3
    expected = {
        "p1": [1.0, 0.0],
        "p10": [0.2, 0.1],
        "mrr": [1.0, 1 / 3],
        "ndcg10": [1.5 / (1 + 1 / math.log2(3)), 0.5],
        "map10": [(1 + 2 / 3) / 2, 1 / 3],
    }
    assert set(result) == set(expected)
    for name, values in expected.items():
        assert result[name].tolist() == pytest.approx(values, abs=1e-6), name


def test_ranking_metrics_only_count_the_top_ten() -> None:
    scores = -torch.arange(12.0)[None, :]  # item i at rank i + 1
    relevant = torch.zeros(1, 12, dtype=torch.bool)
    relevant[0, [4, 11]] = True  # ranks 5 and 12
    result = {name: float(values[0]) for name, values in ranking_metrics(scores, relevant).items()}
    # only rank 5 is within the top 10: P@10 = 1/10, AP@10 = (1/5) / 1; DCG@10 = 1/log2(6) over
    # IDCG@10 = 1 + 1/log2(3); MRR looks at the whole ranking: 1/5
    assert result == pytest.approx(
        {
            "p1": 0.0,
            "p10": 0.1,
            "mrr": 0.2,
            "ndcg10": (1 / math.log2(6)) / (1 + 1 / math.log2(3)),
            "map10": 0.2,
        }
    )


# --- the protocol against a brute-force ranking


def brute_force(scores: list[float], relevant: list[bool]) -> dict[str, float]:
    """Each metric from its definition, on a Python-sorted ranking (random scores have no ties)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits = [relevant[i] for i in order]
    ranks = [r + 1 for r, hit in enumerate(hits) if hit]
    dcg = sum(1 / math.log2(r + 1) for r in ranks if r <= 10)
    ideal = sum(1 / math.log2(r + 2) for r in range(min(10, len(ranks))))
    top = [r for r in ranks if r <= 10]
    return {
        "p1": float(hits[0]),
        "p10": len(top) / 10,
        "mrr": 1 / ranks[0],
        "ndcg10": dcg / ideal,
        "map10": sum((i + 1) / r for i, r in enumerate(top)) / len(top) if top else 0.0,
    }


PRODUCTS = [
    {"category": "dress", "colour": "red", "material": "silk"},
    {"category": "dress", "colour": "blue", "material": "silk"},
    {"category": "shoes", "colour": "red", "material": "silk"},
    {"category": "shoes", "colour": "green", "material": "silk"},
    {"category": "bag", "colour": "red", "material": "silk"},
    {"category": "dress", "material": "silk"},  # no colour: outside the colour field's gallery
    {"category": "bag", "colour": "blue", "material": "silk", "fit": "slim"},
    {"category": "shoes", "colour": "blue", "material": "silk", "fit": "loose"},
]
VIEWS = [1, 2, 3, 1, 2, 1, 2, 3]


@pytest.mark.parametrize("product_embedding", ["mean", "best"])
def test_protocol_matches_brute_force_per_field_and_overall(product_embedding: str) -> None:
    split = catalogue(PRODUCTS, VIEWS)
    values = ["dress", "shoes", "bag", "red", "blue", "green", "slim", "loose"]
    model = text_model(values)
    result = attribute_search(
        split, model, model.tokenize, fields=["fit"], templates=TEMPLATES, product_embedding=product_embedding
    )

    def product_score(query: torch.Tensor, product: int) -> float:
        rows = [i for i, r in enumerate(split.images) if r.product_id == f"p{product}"]
        if product_embedding == "mean":
            return float(F.normalize(split.image_features[rows].sum(dim=0), dim=0) @ query)
        return max(float(split.image_features[row] @ query) for row in rows)

    pooled: dict[str, list[float]] = {}
    fields = {
        "category": ["dress", "shoes", "bag"],
        "colour": ["blue", "red", "green"],
        "fit": ["loose", "slim"],
    }
    for field, queries in fields.items():
        gallery = [p for p, meta in enumerate(PRODUCTS) if field in meta]
        per_query = []
        for value in queries:
            query = model.value_embedding(value)
            scores = [product_score(query, p) for p in gallery]
            per_query.append(brute_force(scores, [PRODUCTS[p][field] == value for p in gallery]))
        for name in per_query[0]:
            expected = sum(q[name] for q in per_query) / len(per_query)
            assert result[f"{field}/{name}"] == pytest.approx(expected, abs=1e-6), (field, name)
            pooled.setdefault(name, []).extend(q[name] for q in per_query)
        assert result[f"{field}/queries"] == len(queries)
    for name, values_ in pooled.items():  # overall: every query of every searched field
        assert result[name] == pytest.approx(sum(values_) / len(values_), abs=1e-6), name
    assert (result["queries"], result["fields"], result["products"]) == (8, 3, 8)
    # material has one value: skipped, with its count kept
    assert (result["material/values"], result["fields_skipped"]) == (1, 1)
    assert "material/p1" not in result


def test_a_product_scores_as_its_best_image_or_its_mean_embedding() -> None:
    # text: red = e0, blue = e1. p0 (blue) has images e0 and e1; p1 (red) one image 0.8 e0 + 0.6 e1.
    # "red":  mean p0 = (e0 + e1)/sqrt(2) -> 0.707 < p1 0.8: p1 (relevant) first;
    #         best p0 = max(1, 0) = 1 > 0.8: p1 second (P@1 0, MRR 1/2)
    # "blue": p0 scores 0.707 (mean) or 1 (best), p1 0.6: p0 (relevant) first either way
    e0, e1 = torch.eye(DIM)[0], torch.eye(DIM)[1]
    model = WordTextModel(["red", "blue"], torch.stack([e0, e1]))
    features = torch.stack([e0, e1, 0.8 * e0 + 0.6 * e1])
    images = [ImageRecord(k, p, None, "c", "x.tar") for k, p in (("a", "p0"), ("b", "p0"), ("c", "p1"))]
    attributes = [{"colour": "blue"}, {"colour": "blue"}, {"colour": "red"}]
    split = EmbeddedSplit(features, images, torch.zeros(0, DIM), [], attributes=attributes)
    results = {
        how: attribute_search(split, model, model.tokenize, templates=("{}",), product_embedding=how)
        for how in ("mean", "best")
    }
    assert (results["mean"]["colour/p1"], results["mean"]["colour/mrr"]) == pytest.approx((1.0, 1.0))
    assert (results["best"]["colour/p1"], results["best"]["colour/mrr"]) == pytest.approx((0.5, 0.75))
    # one relevant product per query within the top 10: P@10 = 1/10
    assert results["best"]["colour/p10"] == pytest.approx(0.1)


def test_cap_keeps_the_most_frequent_values() -> None:
    # colours over 8 products: red x3, blue x3, green x1 -> a cap of 2 queries red and blue
    split = catalogue(PRODUCTS, VIEWS)
    model = text_model(["dress", "shoes", "bag", "red", "blue", "green"])
    result = attribute_search(split, model, model.tokenize, templates=TEMPLATES, max_queries_per_field=2)
    assert (result["colour/values"], result["colour/queries"]) == (3, 2)
    assert (result["category/values"], result["category/queries"]) == (3, 2)
    assert result["queries"] == 4
    # dress x3 and shoes x3 are kept, bag x2 is dropped
    assert set(unflatten(result)) == {"dress", "shoes"}


def test_category_values_are_the_per_category_breakdown() -> None:
    split = catalogue(PRODUCTS, VIEWS)
    model = text_model(["dress", "shoes", "bag", "red", "blue", "green"])
    result = attribute_search(split, model, model.tokenize, templates=TEMPLATES)
    breakdown = unflatten(result)
    assert {c: v["products"] for c, v in breakdown.items()} == {"dress": 3, "shoes": 3, "bag": 2}
    for name in ("p1", "p10", "mrr", "ndcg10", "map10"):
        mean = sum(values[name] for values in breakdown.values()) / 3
        assert result[f"category/{name}"] == pytest.approx(mean, abs=1e-9)


# --- bad input


def test_a_field_no_sample_has_names_the_config_key() -> None:
    split = catalogue(PRODUCTS, VIEWS)
    model = text_model(["dress"])
    with pytest.raises(ConfigError, match=r"protocol\.attributes\.fields.*'fabric'.*category, colour, fit"):
        attribute_search(split, model, model.tokenize, fields=["fabric"])


@pytest.mark.parametrize("attributes", [[], [{"image_name": "x.jpg"}] * 3])
def test_a_split_without_metadata_says_so(attributes: list[dict[str, str]]) -> None:
    images = [ImageRecord(f"k{i}", f"p{i}", None, "c", "x.tar") for i in range(3)]
    split = EmbeddedSplit(torch.eye(3, DIM), images, torch.zeros(0, DIM), [], attributes=attributes)
    model = text_model(["red"])
    with pytest.raises(ConfigError, match=r"protocol\.attributes: the split has no metadata to search"):
        attribute_search(split, model, model.tokenize)


def test_fields_with_one_value_only_are_an_error_naming_the_counts() -> None:
    split = catalogue([{"colour": "red"}, {"colour": "red"}], [1, 1])
    model = text_model(["red"])
    with pytest.raises(ConfigError, match=r"no field has 2 or more distinct values \(colour: 1\)"):
        attribute_search(split, model, model.tokenize)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"product_embedding": "median"}, r"protocol\.attributes\.product_embedding='median'"),
        ({"max_queries_per_field": 0}, r"protocol\.attributes\.max_queries_per_field must be at least 1"),
        ({"templates": ["a photo"]}, r"protocol\.attributes\.templates: template 'a photo'"),
    ],
)
def test_bad_options_name_their_key(options: dict, key: str) -> None:
    split = catalogue(PRODUCTS, VIEWS)
    model = text_model(["dress"])
    with pytest.raises(ConfigError, match=key):
        attribute_search(split, model, model.tokenize, **options)
