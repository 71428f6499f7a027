"""Per-category breakdown: recall per query category against a brute-force ranking, the flat keys, and
the table + chart written to the run directory (worst first, beside the base model)."""

from __future__ import annotations

import torch
from helpers.embedded_splits import brute_force_hits, random_split

from fashion_clip.evaluation.full import full_protocol, group_means
from fashion_clip.records import BASE, FINETUNED, EvaluationRecord, flatten, unflatten
from fashion_clip.reports.tables import write_category_reports
from fashion_clip.retrieval.embedding import EmbeddedSplit, ImageRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CATEGORIES = ["dress", "shoes", "bags"]


def categorised_split() -> EmbeddedSplit:
    """24 products over CATEGORIES, product p in CATEGORIES[p % 3]."""
    return random_split(products=24, dim=8, categories=CATEGORIES)


def test_full_protocol_recall_per_category_matches_brute_force() -> None:
    split = categorised_split()
    metrics = full_protocol(split, ks=(1, 5), chunk_size=5)
    breakdown = unflatten(metrics)
    assert list(breakdown) == sorted(CATEGORIES)
    image_products = [r.product_id for r in split.images]
    caption_products = [c.product_id for c in split.captions]
    category_of = {r.product_id: r.category for r in split.images}
    for k in (1, 5):
        i2t = brute_force_hits(
            split.image_features, split.caption_features, image_products, caption_products, k
        )
        t2i = brute_force_hits(
            split.caption_features, split.image_features, caption_products, image_products, k
        )
        for category in CATEGORIES:
            image_rows = [h for h, r in zip(i2t, split.images, strict=True) if r.category == category]
            caption_rows = [
                h for h, c in zip(t2i, split.captions, strict=True) if category_of[c.product_id] == category
            ]
            assert abs(breakdown[category][f"i2t_r{k}"] - sum(image_rows) / len(image_rows)) < 1e-9
            assert abs(breakdown[category][f"t2i_r{k}"] - sum(caption_rows) / len(caption_rows)) < 1e-9
    dress = breakdown["dress"]
    # dress = products 0, 3, ..., 21: 16 images; captions 1 + 2 + 1 + 2 ... = 12
    assert (dress["images"], dress["captions"]) == (16, 12)
    recalls = [dress[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5)]
    assert abs(dress["mean_recall"] - sum(recalls) / 4) < 1e-9


def test_no_breakdown_when_asked_or_without_categories() -> None:
    split = categorised_split()
    assert not unflatten(full_protocol(split, by_category=False))
    unlabelled = EmbeddedSplit(
        split.image_features,
        [ImageRecord(r.key, r.product_id, None, r.caption, r.source) for r in split.images],
        split.caption_features,
        split.captions,
    )
    assert not unflatten(full_protocol(unlabelled))


def test_group_means_by_hand_and_flat_keys_round_trip() -> None:
    # a: rows 0 and 2, mean(1, 0) = 0.5; b: row 1 alone; b/c: row 4 alone; row 3 has no category
    groups = group_means(["a", "b", "a", None, "b/c"], {"r1": torch.tensor([1, 1, 0, 1, 1])}, "queries")
    assert groups == {
        "a": {"queries": 2.0, "r1": 0.5},
        "b": {"queries": 1.0, "r1": 1.0},
        "b/c": {"queries": 1.0, "r1": 1.0},
    }
    flat = flatten(groups)
    assert flat["by_category/b/c/r1"] == 1.0  # a category may contain '/'
    assert unflatten(flat | {"mean_recall": 0.3}) == groups


def record(stage: str, breakdown: dict[str, dict[str, float]], protocol: str = "full") -> EvaluationRecord:
    """A record with a headline and a breakdown."""
    metrics = {"mean_recall": 0.5} | flatten(breakdown)
    return EvaluationRecord("tiny", None, None, "infonce", "demo", "test", stage, protocol, metrics)


def test_table_and_chart_are_written_worst_first_beside_the_base(tmp_path) -> None:
    base = {"dress": {"images": 4, "mean_recall": 0.10}, "shoes": {"images": 6, "mean_recall": 0.30}}
    tuned = {"dress": {"images": 4, "mean_recall": 0.70}, "shoes": {"images": 6, "mean_recall": 0.40}}
    records = [record(BASE, base), record(FINETUNED, tuned), record(BASE, {}, protocol="sample100")]
    written = write_category_reports(records, tmp_path)
    assert [p.name for p in written] == ["categories_full.md", "categories_full.png"]  # sample100 has none
    table = written[0].read_text().splitlines()
    assert table[2] == "| category | images | mean_recall | mean_recall (base) | change |"
    # shoes (0.40) is worse than dress (0.70) after fine-tuning, so it comes first
    assert table[4:] == [
        "| shoes | 6 | 0.4000 | 0.3000 | +0.1000 |",
        "| dress | 4 | 0.7000 | 0.1000 | +0.6000 |",
    ]
    assert written[1].read_bytes().startswith(PNG_SIGNATURE)
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def test_a_single_evaluation_gets_its_table_without_base_columns(tmp_path) -> None:
    written = write_category_reports([record(BASE, {"hat": {"images": 2, "mean_recall": 0.25}})], tmp_path)
    assert written[0].read_text().splitlines()[2:] == [
        "| category | images | mean_recall |",
        "|---|---|---|",
        "| hat | 2 | 0.2500 |",
    ]
