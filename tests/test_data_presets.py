"""Each data preset points at the split directories the importers write, so no brace range is hand-typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.raw_catalogue import mapping, write_json

from fashion_clip.data.shard_spec import count_samples, resolve_shards
from fashion_clip.ingest.sources import json_mapping as shards


@pytest.mark.parametrize("preset", ["fashiongen", "indofashion"])
def test_preset_reads_what_the_writer_produced(compose_train, tmp_path: Path, preset: str) -> None:
    data_dir = tmp_path / "data"
    records = mapping(tmp_path, products=6)
    for split, rows in (("train", records[:6]), ("valid", records[6:])):
        path = write_json(tmp_path / f"clip_dataset_{split}.json", rows)
        argv = ["--json", str(path), "--output-dir", str(data_dir / preset), "--dataset-name", preset]
        extra = ["--test-fraction", "0.5"] if split == "valid" else []
        assert shards.main([*argv, *extra, "--no-progress"]) == 0
    cfg = compose_train(f"data={preset}", data_dir=data_dir)
    counts = {split: count_samples(cfg.data[split]) for split in ("train", "val", "test")}
    assert counts["train"] == 6 and counts["val"] + counts["test"] == 6
    assert all(url.endswith(".tar") for url in resolve_shards(cfg.data.train))


def test_augmented_preset_trains_on_its_own_shards_and_evaluates_on_plain_ones(compose_train) -> None:
    aug, plain = compose_train("data=fashiongen_aug").data, compose_train("data=fashiongen").data
    assert aug.name == "fashiongen_aug"
    assert aug.train.endswith("/fashiongen_aug/train") and aug.train != plain.train
    assert (aug.val, aug.test) == (plain.val, plain.test)
