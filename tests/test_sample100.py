"""sample100: candidate sampling (same category first, seeded) and scoring against a brute-force loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.sample100 import sample100, sample_candidates
from fashion_clip.retrieval.embedding import CaptionRecord, EmbeddedSplit, ImageRecord

DIM = 16


def make_split(categories: list[str | None], seed: int = 0, perfect: bool = False) -> EmbeddedSplit:
    """Product i has category categories[i], 1-3 images and 1-2 captions; `perfect` gives them one feature."""
    gen = torch.Generator().manual_seed(seed)
    images, captions, image_rows, caption_rows = [], [], [], []
    for i, category in enumerate(categories):
        product = F.normalize(torch.randn(DIM, generator=gen), dim=0)
        for v in range(1 + i % 3):
            images.append(ImageRecord(f"p{i}-{v}", f"p{i}", category, f"caption {i}", "shard.tar"))
            image_rows.append(product if perfect else F.normalize(torch.randn(DIM, generator=gen), dim=0))
        for c in range(1 + i % 2):
            captions.append(CaptionRecord(f"p{i}", f"caption {i} #{c}"))
            caption_rows.append(product if perfect else F.normalize(torch.randn(DIM, generator=gen), dim=0))
    return EmbeddedSplit(torch.stack(image_rows), images, torch.stack(caption_rows), captions)


def mixed_categories() -> list[str | None]:
    """60 products: 40 dresses, 5 bags (fewer than the negatives the tests ask for), 15 without a category."""
    return ["dresses"] * 40 + ["bags"] * 5 + [None] * 15


def brute_force_recall(split: EmbeddedSplit, queries: int, negatives: int, seed: int) -> dict[str, float]:
    """Per-query python loop over the same candidates: negatives scoring >= the positive count against it."""
    matrices = {
        "i2t": (split.image_features.tolist(), split.caption_features.tolist()),
        "t2i": (split.caption_features.tolist(), split.image_features.tolist()),
    }
    results = {}
    for direction, draw in sample_candidates(split, queries, negatives, seed).items():
        query_matrix, gallery = matrices[direction]
        ranks = []
        for query_row, candidate_rows in zip(draw.queries.tolist(), draw.gallery.tolist(), strict=True):
            query = query_matrix[query_row]
            scores = [sum(a * b for a, b in zip(query, gallery[c], strict=True)) for c in candidate_rows]
            ranks.append(sum(score >= scores[0] for score in scores[1:]))
        for k in (1, 5, 10):
            results[f"{direction}_r{k}"] = sum(rank < k for rank in ranks) / len(ranks)
    return results


def candidate_products(split: EmbeddedSplit, direction: str, rows: torch.Tensor) -> list[list[str]]:
    """Product id of each gallery row, in the direction's gallery (captions for i2t, images for t2i)."""
    records = split.captions if direction == "i2t" else split.images
    return [[records[r].product_id for r in row] for row in rows.tolist()]


def test_matches_brute_force_on_random_features() -> None:
    split = make_split(mixed_categories(), seed=1)
    result = sample100(split, num_queries=40, num_negatives=20, seed=3)
    reference = brute_force_recall(split, 40, 20, 3)
    assert {k: result[k] for k in reference} == pytest.approx(reference)
    assert result["mean_recall"] == pytest.approx(sum(reference.values()) / 6)
    assert 0 < result["mean_recall"] < 1
    assert (result["queries"], result["negatives"], result["seed"]) == (40, 20, 3)


def test_candidates_are_the_queried_product_then_distinct_other_products() -> None:
    split = make_split(mixed_categories())
    for direction, draw in sample_candidates(split, num_queries=30, num_negatives=12, seed=0).items():
        query_records = split.images if direction == "i2t" else split.captions
        assert draw.gallery.shape == (30, 13)
        assert len({query_records[r].product_id for r in draw.queries.tolist()}) == 30
        products_per_query = candidate_products(split, direction, draw.gallery)
        for query_row, products in zip(draw.queries.tolist(), products_per_query, strict=True):
            assert products[0] == query_records[query_row].product_id
            assert len(set(products)) == 13


def test_negatives_come_from_the_query_category_first_then_fill() -> None:
    split = make_split(mixed_categories())
    category = {r.product_id: r.category for r in split.images}
    sizes = {name: sum(c == name for c in category.values()) for name in ("dresses", "bags")}
    num_negatives = 12
    assert sizes["dresses"] > num_negatives + 1 and sizes["bags"] < num_negatives
    checked = set()
    draw = sample_candidates(split, num_queries=60, num_negatives=num_negatives, seed=5)["t2i"]
    for products in candidate_products(split, "t2i", draw.gallery):
        query_category, negatives = category[products[0]], [category[p] for p in products[1:]]
        if query_category == "dresses":
            assert negatives == ["dresses"] * num_negatives
        elif query_category == "bags":
            assert negatives.count("bags") == sizes["bags"] - 1
        else:
            assert set(negatives) != {None}, "products without a category are no category of their own"
        checked.add(query_category)
    assert checked == {"dresses", "bags", None}


def test_same_seed_repeats_and_other_seed_differs() -> None:
    split = make_split(mixed_categories(), seed=2)
    first, again, other = (sample_candidates(split, 25, 10, seed) for seed in (7, 7, 8))
    for direction in ("i2t", "t2i"):
        assert torch.equal(first[direction].queries, again[direction].queries)
        assert torch.equal(first[direction].gallery, again[direction].gallery)
        assert not torch.equal(first[direction].gallery, other[direction].gallery)
    assert sample100(split, 25, 10, seed=7) == sample100(split, 25, 10, seed=7)


def test_perfect_features_give_full_recall() -> None:
    split = make_split(mixed_categories(), perfect=True)
    result = sample100(split, num_queries=60, num_negatives=30, seed=0)
    assert all(result[f"{d}_r{k}"] == 1.0 for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert result["mean_recall"] == 1.0


def test_queries_are_capped_at_the_number_of_products() -> None:
    split = make_split(mixed_categories())
    assert sample100(split, num_queries=1000, num_negatives=10)["queries"] == 60


def test_too_few_products_names_the_count_and_key() -> None:
    split = make_split(["tops"] * 50)
    with pytest.raises(ConfigError, match=r"has 50.*sample100\.num_negatives"):
        sample100(split, num_negatives=100)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"num_queries": 0}, "sample100.num_queries"), ({"ks": (0, 5)}, "sample100.ks")],
)
def test_bad_settings_name_their_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        sample100(make_split(["tops"] * 20), num_negatives=5, **kwargs)


def test_random_features_score_at_chance_for_a_thousand_queries() -> None:
    split = make_split([f"c{i % 7}" for i in range(1200)], seed=4)
    result = sample100(split, num_queries=1000, num_negatives=100)
    assert result["queries"] == 1000
    for direction in ("i2t", "t2i"):
        for k in (1, 5, 10):
            assert result[f"{direction}_r{k}"] == pytest.approx(k / 101, abs=0.04)


def test_ties_count_against_the_positive_so_a_collapsed_model_scores_zero() -> None:
    split = make_split(mixed_categories())
    split.image_features = torch.ones_like(split.image_features) / DIM**0.5
    split.caption_features = torch.ones_like(split.caption_features) / DIM**0.5
    metrics = sample100(split, num_queries=20, num_negatives=10)
    assert metrics["mean_recall"] == 0.0
