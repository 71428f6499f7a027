"""Feature, prediction and score files in the layout the FashionKLIP / Chinese-CLIP evaluation tools read.

Text queries are the split's distinct (product, caption) pairs, numbered in order (`query_id`); images are
named by their catalogue (shard) key (`image_id`, and in predictions `item_ids`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.retrieval.embedding import EmbeddedSplit
from fashion_clip.utils.files import atomic_text, write_jsonl

IMAGE_FEATURES = "image_features.jsonl"
QUERY_FEATURES = "query_features.jsonl"
PREDICTIONS = "predictions.jsonl"
SCORES = "scores.json"
ID_KEYS = ("image_id", "query_id", "text_id")  # text_id: Chinese-CLIP's name for a query id
RECALL_KS = (1, 5, 10)


def write_image_features(split: EmbeddedSplit, path: str | Path) -> Path:
    """`{"image_id", "feature"}` per image, in the split's order."""
    records = (
        {"image_id": image.key, "feature": split.image_features[i].tolist()}
        for i, image in enumerate(split.images)
    )
    return write_jsonl(path, records, len(split.images))


def write_query_features(split: EmbeddedSplit, path: str | Path) -> Path:
    """`{"query_id", "query_text", "feature"}` per distinct caption; the id is the caption's index."""
    records = (
        {"query_id": i, "query_text": caption.text, "feature": split.caption_features[i].tolist()}
        for i, caption in enumerate(split.captions)
    )
    return write_jsonl(path, records, len(split.captions))


def top_k_images(split: EmbeddedSplit, k: int, chunk_size: int = 1024) -> Iterator[torch.Tensor]:
    """Each query's k most similar image indices, best first; a chunk of queries at a time bounds memory."""
    if k < 1:
        raise ConfigError(f"k={k}: the number of predicted images per query must be at least 1")
    k = min(k, len(split.images))
    for start in range(0, len(split.captions), chunk_size):
        similarity = split.caption_features[start : start + chunk_size] @ split.image_features.T
        yield from similarity.topk(k, dim=1).indices


def write_predictions(split: EmbeddedSplit, path: str | Path, k: int = 10, chunk_size: int = 1024) -> Path:
    """`{"query_id", "item_ids"}` per text query: its top-k image keys (all images if fewer than k)."""
    records = (
        {"query_id": i, "item_ids": [split.images[j].key for j in indices.tolist()]}
        for i, indices in enumerate(top_k_images(split, k, chunk_size))
    )
    return write_jsonl(path, records, len(split.captions))


def fashionklip_scores(metrics: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
    """FashionKLIP scores text-to-image only: r1/r5/r10 are `t2i_r*`, mean_recall their mean (t2i only)."""
    missing = [f"t2i_r{k}" for k in RECALL_KS if f"t2i_r{k}" not in metrics]
    if missing:
        raise ValueError(f"metrics lack {missing} (have {sorted(metrics)})")
    scores = {f"r{k}": float(metrics[f"t2i_r{k}"]) for k in RECALL_KS}
    scores["mean_recall"] = sum(scores.values()) / len(RECALL_KS)
    return scores


def write_scores(metrics: Mapping[str, float | torch.Tensor], path: str | Path) -> Path:
    """`{"r1", "r5", "r10", "mean_recall"}` from the t2i recalls (fractions in [0, 1], like `metrics`)."""
    with atomic_text(path) as f:
        json.dump(fashionklip_scores(metrics), f, indent=2)
    return Path(path)


def parse_feature_line(line: str) -> tuple[str | int, torch.Tensor]:
    """Id and feature vector of one features line; ValueError says what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg})") from e
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    id_key = next((key for key in ID_KEYS if key in record), None)
    if id_key is None:
        raise ValueError(f"no id: expected one of {', '.join(ID_KEYS)}")
    try:
        feature = torch.tensor(record.get("feature"), dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"'feature' is not a list of numbers ({e})") from e
    if feature.ndim != 1 or not len(feature):
        raise ValueError(
            f"'feature' must be a non-empty flat list of numbers, got shape {tuple(feature.shape)}"
        )
    return record[id_key], feature


def read_features(path: str | Path) -> tuple[list[str | int], torch.Tensor]:
    """Ids and an (N, D) float32 tensor from an image or query features file (ours or Chinese-CLIP's)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"features file '{path}' does not exist")
    ids: list[str | int] = []
    rows: list[torch.Tensor] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(tqdm(f, desc=f"reading {path.name}", unit="line"), start=1):
            if not line.strip():
                continue
            try:
                feature_id, feature = parse_feature_line(line)
                if rows and len(feature) != len(rows[0]):
                    raise ValueError(f"feature has {len(feature)} values, earlier lines {len(rows[0])}")
            except ValueError as e:
                raise UserError(f"{path}, line {number}: {e}; fix or regenerate the features file") from e
            ids.append(feature_id)
            rows.append(feature)
    return ids, torch.stack(rows) if rows else torch.zeros(0, 0)


def export_fashionklip(
    split: EmbeddedSplit, metrics: Mapping[str, float | torch.Tensor], out_dir: str | Path, k: int = 10
) -> dict[str, Path]:
    """All four FashionKLIP files under `out_dir` with their fixed names, keyed by file name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        IMAGE_FEATURES: write_image_features(split, out_dir / IMAGE_FEATURES),
        QUERY_FEATURES: write_query_features(split, out_dir / QUERY_FEATURES),
        PREDICTIONS: write_predictions(split, out_dir / PREDICTIONS, k),
        SCORES: write_scores(metrics, out_dir / SCORES),
    }
