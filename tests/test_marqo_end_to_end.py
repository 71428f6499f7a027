"""Marqo's benchmark end to end on each of its 7 hub datasets' schemas: a small parquet in the schema, the
parquet importer's shards of it, Marqo-format dataset config and ground-truth files for tasks that fit the
schema, `python -m fashion_clip.evaluate protocol=[marqo]` on a random-init tiny model, and every metric it
reports against pytrec_eval and the definitions, on rankings built here by brute force from the same
weights' embeddings of the same shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers.entry_in_process import run_entry
from helpers.search_index import load_tiny
from helpers.tiny_model import save_tiny_weights
from test_marqo_protocol import (
    KS,
    METRICS,
    PREFIX,
    brute_force_rankings,
    definition_metrics,
    library_metrics,
)
from test_parquet_import import CARDS, KEYS, card_rows, expected_caption, write_dataset

from fashion_clip.data.catalogue_reader import ShardCatalogue
from fashion_clip.data.manifest import read_manifest
from fashion_clip.ingest.sources.parquet import main
from fashion_clip.records import read_results
from fashion_clip.retrieval.embedding import embed_catalogue

PRODUCTS, VIEWS = 8, 2  # 16 documents, two per item_ID as in Marqo's multi-view datasets
WEIGHTS = (0.9, 0.1)


def tasks_for(preset: str) -> list[dict]:
    """Tasks the schema fits, in Marqo's config shape: its text finds the item's images (where the card has
    a text column), and the columns the importer maps to category, subcategory and colour find every
    product with the value (documents the weighted image and text embeddings where there is text)."""
    has_text = "text" in CARDS[preset]
    tasks = [{"name": "text-to-image", "query_col": ["text"], "doc_col": ["image"]}] if has_text else []
    attribute_task = {"name": "category-to-product", "query_col": list(KEYS[preset].values())}
    if has_text:
        attribute_task |= {"doc_col": ["image", "text"], "doc_weights": list(WEIGHTS)}
    else:
        attribute_task |= {"doc_col": ["image"]}
    return [*tasks, attribute_task]


def ground_truth(rows: list[dict], column: str) -> dict[str, dict[str, int]]:
    """Each value of the column (over the imported rows) -> {item_ID: 1} for every item that has it."""
    truth: dict[str, dict[str, int]] = {}
    for row in rows:
        truth.setdefault(row[column], {})[str(row["item_ID"])] = 1
    return truth


def write_benchmark(root: Path, name: str, tasks: list[dict], rows: list[dict]) -> Path:
    """configs/<name>.json and data/<name>/gt_query_doc/ground_truth_<query col>-<doc cols>.json."""
    config = root / "configs" / f"{name}.json"
    folder = root / "data" / name / "gt_query_doc"
    config.parent.mkdir(parents=True)
    folder.mkdir(parents=True)
    config.write_text(json.dumps({"name": name, "hf_dataset": f"Marqo/{name}", "tasks": tasks}))
    for task in tasks:
        for query_col in task["query_col"]:
            path = folder / f"ground_truth_{query_col}-{'+'.join(task['doc_col'])}.json"
            path.write_text(json.dumps(ground_truth(rows, query_col)))
    return config


def as_eval_py_ranks(ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The top k as eval.py keeps it, a dict keyed by item_ID built in rank order (a repeated id keeps its
    later, lower score), in the order of those scores, as pytrec_eval reads the dict."""
    kept: dict[str, float] = {}
    for doc, score in ranked:
        kept[doc] = score
    return sorted(kept.items(), key=lambda pair: -pair[1])


def references(
    name: str, tasks: list[dict], rows: list[dict], image_features: torch.Tensor, encode: callable
) -> dict[str, dict[str, dict[str, float]]]:
    """Per task label: the definitions' and pytrec_eval's metrics of brute-force rankings, the documents
    built from the parquet rows' own texts and ids."""
    ids = [str(row["item_ID"]) for row in rows]
    fields = {"image": image_features, "text": encode([row.get("text") or "" for row in rows])}
    results = {}
    for task in tasks:
        weights = task.get("doc_weights", [1.0])
        cols = task["doc_col"]
        documents = F.normalize(sum(w * fields[c] for c, w in zip(cols, weights, strict=True)), dim=-1)
        for query_col in task["query_col"]:
            label = f"{name}/{task['name']}"
            label += f" ({query_col})" if len(task["query_col"]) > 1 else ""
            qrels = ground_truth(rows, query_col)
            queries = dict(zip(qrels, encode([PREFIX + q for q in qrels]), strict=True))
            ranked = {
                query: as_eval_py_ranks(pairs)
                for query, pairs in brute_force_rankings(queries, documents, ids, max(KS)).items()
            }
            results[label] = {
                "definitions": definition_metrics(qrels, ranked),
                "library": library_metrics(qrels, ranked),
            }
    return results


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(CARDS))
def test_a_marqo_schema_imported_and_evaluated_scores_as_the_references(
    preset: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = write_dataset(tmp_path / "hub", preset, card_rows(preset, PRODUCTS, VIEWS))
    imported = rows[: PRODUCTS * VIEWS]  # the corrupt image and the row without a caption are skipped
    code = main(
        [
            *("--parquet", str(tmp_path / "hub"), "--preset", preset),
            *("--output-dir", str(tmp_path / "shards"), "--split", "test", "--no-progress"),
        ]
    )
    assert code == 0, capsys.readouterr().out
    shards = tmp_path / "shards" / "test"
    assert read_manifest(shards).num_samples == len(imported)

    name = preset.upper()
    tasks = tasks_for(preset)
    config = write_benchmark(tmp_path / "marqo-FashionCLIP", name, tasks, imported)
    ckpt = save_tiny_weights(tmp_path / "tiny.pt", seed=0)
    done = run_entry(
        "evaluate",
        "model=tiny",
        f"ckpt_path={ckpt}",
        f"data.test={shards}",
        "protocol=[marqo]",
        f"protocol.marqo.dataset_config={config.relative_to(tmp_path)}",
        f"protocol.marqo.query_prefix='{PREFIX}'",
        "evaluation.num_workers=0",
        "evaluation.device=cpu",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = read_results(tmp_path / "run" / "evaluation_results.json")
    assert record.protocol == "marqo" and record.metrics["skipped"] == 0
    metrics = record.metrics

    bundle, _ = load_tiny(ckpt)
    split = embed_catalogue(
        bundle.model, bundle.tokenizer, ShardCatalogue(str(shards), bundle.val_transform), 8, 0
    )
    assert [r.product_id for r in split.images] == [str(row["item_ID"]) for row in imported]
    assert [r.caption for r in split.images] == [expected_caption(preset, row) for row in imported]

    @torch.no_grad()
    def encode(texts: list[str]) -> torch.Tensor:
        return bundle.model.encode_text(bundle.tokenizer(texts), normalize=True)

    expected = references(name, tasks, imported, split.image_features, encode)
    assert metrics["tasks"] == len(expected) and metrics["documents"] == len(imported)
    for label, reference in expected.items():
        assert metrics[f"{label}/missing_relevant"] == 0
        for metric in METRICS:
            for kind, values in reference.items():
                assert metrics[f"{label}/{metric}"] == pytest.approx(values[metric], abs=1e-6), (
                    label,
                    metric,
                    kind,
                )
    for metric in METRICS:
        mean = sum(metrics[f"{label}/{metric}"] for label in expected) / len(expected)
        assert metrics[metric] == pytest.approx(mean, abs=1e-12)
