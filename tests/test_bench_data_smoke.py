"""`benchmarks/data_pipeline.py` (`make bench-data`): the smoke path writes every variant's row; the
summary's medians, spreads and ratios are exact.

No speed is asserted: benchmarks measure, tests only prove the harness works.
"""

from __future__ import annotations

import sys

import pytest
from helpers.bench_smoke import BENCH_DIR, smoke_run

sys.path.insert(0, str(BENCH_DIR))

from data_pipeline import REFERENCE, SPLITS, rotated, summary_row  # noqa: E402


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """One `data_pipeline.py --smoke` run in a fresh process, as `make bench-data` would start it."""
    root = tmp_path_factory.mktemp("bench-data")
    return smoke_run("data_pipeline.py", root)


@pytest.mark.slow
def test_smoke_has_every_variant_with_a_rate(smoke_results: tuple[dict, str]) -> None:
    results, text = smoke_results
    rows = results["rows"]
    sources = list(dict.fromkeys(row["source"] for row in rows))
    assert len(sources) == 2 and sources[1].endswith("photo JPEG")
    expected = [(s, split, v) for s in sources for split, variants in SPLITS.items() for v in variants]
    assert [(r["source"], r["split"], r["pipeline"]) for r in rows] == expected
    for row in rows:
        line = f"| {row['source']} | {row['split']} | {row['pipeline']} |"
        assert sum(text_line.startswith(line) for text_line in text.splitlines()) == 1
        if row["pipeline"] == REFERENCE:
            assert row["samples_per_s"] is None and row["note"] == "not run: --smoke measures ours only"
            continue
        assert row["samples_per_s"] > 0 and len(row["runs"]) == 1 and row["note"] is None
        assert row["ratio"] is None, "no open_clip_train runs to divide by"
    assert results["meta"]["data_workers"] == 1 and results["meta"]["machine"]["cpu"] in text


@pytest.mark.slow
def test_smoke_uint8_batches_are_a_quarter_of_float32(smoke_results: tuple[dict, str]) -> None:
    results, _ = smoke_results
    by_key = {(r["source"], r["split"], r["pipeline"]): r for r in results["rows"]}
    for (source, split, variant), row in by_key.items():
        if variant.startswith("ours uint8"):
            float32 = by_key[source, split, "ours float"]
            assert (row["dtype"], float32["dtype"]) == ("uint8", "float32")
            assert row["batch_bytes"] * 4 == float32["batch_bytes"]


def test_summary_takes_medians_and_pairs_ratios_by_round() -> None:
    ours = [{"samples_per_s": rate, "batch_bytes": 8, "dtype": "uint8"} for rate in (30.0, 10.0, 20.0)]
    theirs = [{"samples_per_s": rate, "batch_bytes": 32, "dtype": "float32"} for rate in (10.0, 10.0, 40.0)]
    row = summary_row(("src", "train", "ours uint8"), ours, theirs, "unused")
    assert (row["samples_per_s"], row["min"], row["max"]) == (20.0, 10.0, 30.0)
    assert row["ratio"] == pytest.approx(2.0), "medians: 20 / 10"
    assert (row["round_ratio_min"], row["round_ratio_max"]) == pytest.approx((0.5, 3.0))
    assert row["round_ratio_median"] == pytest.approx(1.0), "rounds: 3, 1, 0.5"
    assert row["note"] is None and row["batch_bytes"] == 8
    alone = summary_row(("src", "train", "ours uint8"), ours, [], "unused")
    assert alone["ratio"] is None and alone["round_ratio_min"] is None and alone["samples_per_s"] == 20.0
    missing = summary_row(("src", "train", REFERENCE), [], [], "not run: why")
    assert missing["samples_per_s"] is None and missing["note"] == "not run: why"


def test_each_round_starts_with_another_variant() -> None:
    variants = SPLITS["train"]
    starts = [rotated(variants, round_index)[0] for round_index in range(len(variants))]
    assert sorted(starts) == sorted(variants)
    assert rotated(variants, len(variants) + 1) == rotated(variants, 1)
