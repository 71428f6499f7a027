"""FashionKLIP-format files: features round trip, predictions vs a brute-force ranking, scores, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.evaluation.fashionklip_files import (
    export_fashionklip,
    fashionklip_scores,
    read_features,
    write_image_features,
    write_predictions,
    write_query_features,
    write_scores,
)
from fashion_clip.retrieval.embedding import CaptionRecord, EmbeddedSplit, ImageRecord


def random_split(images: int = 13, captions: int = 11, dim: int = 8, seed: int = 0) -> EmbeddedSplit:
    """Unit-norm random features with string image keys and captions spread over a few products."""
    g = torch.Generator().manual_seed(seed)
    image_features = torch.nn.functional.normalize(torch.randn(images, dim, generator=g), dim=1)
    caption_features = torch.nn.functional.normalize(torch.randn(captions, dim, generator=g), dim=1)
    records = [
        ImageRecord(f"img-{i:03d}", f"p{i % 4}", "dress", f"caption {i}", "shard.tar") for i in range(images)
    ]
    caps = [CaptionRecord(f"p{i % 4}", f"a dress, «{i}»") for i in range(captions)]
    return EmbeddedSplit(image_features, records, caption_features, caps)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_image_features_round_trip_exactly(tmp_path: Path) -> None:
    split = random_split()
    ids, features = read_features(write_image_features(split, tmp_path / "images.jsonl"))
    assert ids == [r.key for r in split.images]
    assert features.dtype == torch.float32
    assert torch.equal(features, split.image_features)


def test_query_features_number_the_distinct_captions(tmp_path: Path) -> None:
    split = random_split()
    path = write_query_features(split, tmp_path / "queries.jsonl")
    lines = read_jsonl(path)
    assert [line["query_id"] for line in lines] == list(range(len(split.captions)))
    assert [line["query_text"] for line in lines] == [c.text for c in split.captions]
    ids, features = read_features(path)
    assert ids == list(range(len(split.captions)))
    assert torch.equal(features, split.caption_features)


def test_reads_chinese_clip_text_features(tmp_path: Path) -> None:
    path = tmp_path / "text_feat.jsonl"
    path.write_text('{"text_id": 7, "feature": [0.5, -1]}\n\n{"text_id": 9, "feature": [2, 3.25]}\n')
    ids, features = read_features(path)
    assert ids == [7, 9]
    assert torch.equal(features, torch.tensor([[0.5, -1.0], [2.0, 3.25]]))


@pytest.mark.parametrize(("k", "chunk_size"), [(5, 3), (1, 100), (50, 4)])
def test_predictions_equal_brute_force_ranking(tmp_path: Path, k: int, chunk_size: int) -> None:
    split = random_split()
    lines = read_jsonl(write_predictions(split, tmp_path / "predictions.jsonl", k=k, chunk_size=chunk_size))
    order = (split.caption_features @ split.image_features.T).argsort(dim=1, descending=True)
    expected = [[split.images[j].key for j in row[:k].tolist()] for row in order]
    assert [line["query_id"] for line in lines] == list(range(len(split.captions)))
    assert [line["item_ids"] for line in lines] == expected
    assert all(len(line["item_ids"]) == min(k, len(split.images)) for line in lines)


def test_failed_write_keeps_the_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text("keep me\n")
    with pytest.raises(ConfigError, match="k=0"):
        write_predictions(random_split(), path, k=0)
    assert path.read_text() == "keep me\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.jsonl"]


def test_scores_are_text_to_image_recall(tmp_path: Path) -> None:
    metrics = {
        "i2t_r1": 0.9, "i2t_r5": 0.95, "i2t_r10": 1.0,
        "t2i_r1": torch.tensor(0.25), "t2i_r5": 0.5, "t2i_r10": 0.75, "mean_recall": 0.725,
    }  # fmt: skip
    scores = json.loads(write_scores(metrics, tmp_path / "scores.json").read_text())
    assert scores == pytest.approx({"r1": 0.25, "r5": 0.5, "r10": 0.75, "mean_recall": 0.5})


def test_scores_name_missing_recall_keys() -> None:
    with pytest.raises(ValueError, match="t2i_r5"):
        fashionklip_scores({"t2i_r1": 0.1, "t2i_r10": 0.3})


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"feature": [1, 2]}', "no id"),
        ('{"image_id": "x", "feature": ["a", "b"]}', "list of numbers"),
        ('{"image_id": "x", "feature": null}', "list of numbers"),
        ('{"image_id": "x", "feature": []}', "non-empty"),
        ('{"image_id": "x", "feature": [[1, 2]]}', "flat list"),
        ('{"image_id": "x", "feature": [1, 2, 3]}', "3 values, earlier lines 2"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, problem: str) -> None:
    path = tmp_path / "image_features.jsonl"
    path.write_text(f'{{"image_id": "a", "feature": [1, 2]}}\n\n{bad_line}\n')
    with pytest.raises(UserError) as info:
        read_features(path)
    assert str(path) in str(info.value)
    assert "line 3" in str(info.value)
    assert problem in str(info.value)


def test_missing_features_file(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="nope.jsonl"):
        read_features(tmp_path / "nope.jsonl")


def test_export_writes_the_four_files(tmp_path: Path) -> None:
    split = random_split()
    metrics = {"t2i_r1": 0.1, "t2i_r5": 0.2, "t2i_r10": 0.3}
    written = export_fashionklip(split, metrics, tmp_path / "klip", k=3)
    names = ["image_features.jsonl", "query_features.jsonl", "predictions.jsonl", "scores.json"]
    assert sorted(written) == sorted(names)
    assert sorted(p.name for p in (tmp_path / "klip").iterdir()) == sorted(names)
    assert len(read_jsonl(written["image_features.jsonl"])) == len(split.images)
    assert all(len(line["item_ids"]) == 3 for line in read_jsonl(written["predictions.jsonl"]))
    assert json.loads(written["scores.json"].read_text())["mean_recall"] == pytest.approx(0.2)
