"""protocol=marqo: every metric against pytrec_eval run on the same rankings and against a brute-force
computation from the definitions; the evaluate command on shards with Marqo-like metadata (a checkpoint and
its ONNX export); the leaderboard files and report beside the published rows; the crafted dataset configs
and ground truths it refuses. Also the attributes protocol's trec_eval AP@10 against pytrec_eval."""

from __future__ import annotations

import io
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
import torch
import torch.nn.functional as F
from helpers.entry_in_process import run_entry
from helpers.search_index import load_tiny
from helpers.shard_samples import shard_sample, write_split
from helpers.tiny_model import TINY, save_tiny_weights
from PIL import Image
from torch import nn

from fashion_clip.data.catalogue_reader import ShardCatalogue
from fashion_clip.deploy.export import export_onnx_directory
from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.evaluation.attributes import ranking_metrics
from fashion_clip.evaluation.marqo import MarqoBenchmark, ranked_run
from fashion_clip.records import read_results
from fashion_clip.reports.leaderboard import published_payload
from fashion_clip.retrieval.embedding import EmbeddedSplit, ImageRecord, embed_catalogue

DIM = 8
ITEMS = 16
KS = (1, 10)
CATEGORIES = ("Apparel", "Footwear", "Accessories")
SEASONS = ("Summer", "Winter")
PREFIX = "description: "
WEIGHTS = {"category-to-product": (0.9, 0.1), "season-to-product": (0.7, 0.3)}
DOC_COLS = {
    "text-to-image": ("image",),
    "category-to-product": ("image", "text"),
    "season-to-product": ("image", "description"),
}
QUERY_COLS = {"text-to-image": "text", "category-to-product": "category1", "season-to-product": "season"}
METRICS = ("ndcg1", "ndcg10", "map1", "map10", "recall1", "recall10", "p1", "p10", "mrr")


def item_id(i: int) -> str:
    return str(100 + i)


def item_json(i: int) -> dict[str, str]:
    """A KAGL-like row's columns as the parquet importer keeps them: text is the caption, item_ID the
    product id, the rest json fields; descriptions repeat, so a text field has fewer distinct values."""
    return {"category1": CATEGORIES[i % 3], "season": SEASONS[i % 2], "description": f"desc {i % 5}"}


def dataset_config() -> dict:
    """Marqo's configs/KAGL.json shape: a single-field task and two weighted ones."""
    tasks = []
    for name, doc_cols in DOC_COLS.items():
        task = {"name": name, "query_col": [QUERY_COLS[name]], "doc_col": list(doc_cols)}
        tasks.append(task | ({"doc_weights": list(WEIGHTS[name])} if name in WEIGHTS else {}))
    return {"name": "KAGL", "hf_dataset": "Marqo/KAGL", "tasks": tasks}


def ground_truth() -> dict[str, dict[str, dict[str, int]]]:
    """Each query column's ground truth: captions find their item (one query also an item absent from the
    split, one only absent items), categories and seasons every item that has them."""
    texts = {f"text {i}": {item_id(i): 1} for i in range(12)}
    texts["text 0"]["998"] = 1
    texts["text 99"] = {"999": 1}
    by_field = {
        field: {
            value: {item_id(i): 1 for i in range(ITEMS) if item_json(i)[field] == value} for value in values
        }
        for field, values in (("category1", CATEGORIES), ("season", SEASONS))
    }
    return {"text": texts} | by_field


def write_benchmark(root: Path) -> tuple[Path, Path]:
    """The dataset config and its gt_query_doc folder, laid out as in a clone of Marqo's repository."""
    config = root / "configs" / "KAGL.json"
    folder = root / "data" / "KAGL" / "gt_query_doc"
    folder.mkdir(parents=True)
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps(dataset_config()))
    for name, doc_cols in DOC_COLS.items():
        query_col = QUERY_COLS[name]
        truth = ground_truth()[query_col]
        (folder / f"ground_truth_{query_col}-{'+'.join(doc_cols)}.json").write_text(json.dumps(truth))
    return config, folder


class TextTable(nn.Module):
    """Text tower stand-in: each known text embeds to a fixed random row; an unknown text fails the test."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__()
        self.texts = texts
        self.register_buffer(
            "table", torch.randn(len(texts), DIM, generator=torch.Generator().manual_seed(3))
        )

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([self.texts.index(t) for t in texts])

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        rows = self.table[tokens]
        return F.normalize(rows, dim=-1) if normalize else rows


def embedded_split() -> EmbeddedSplit:
    """ITEMS documents with random unit image features and the metadata the reader gives them."""
    images = [
        ImageRecord(f"k{i}", item_id(i), item_json(i)["category1"], f"text {i}", "x.tar")
        for i in range(ITEMS)
    ]
    features = F.normalize(torch.randn(ITEMS, DIM, generator=torch.Generator().manual_seed(1)), dim=-1)
    return EmbeddedSplit(
        features, images, torch.zeros(0, DIM), [], attributes=[item_json(i) for i in range(ITEMS)]
    )


# --- the references: rankings by brute force, metrics from their definitions and from pytrec_eval


Ranked = dict[str, list[tuple[str, float]]]


def brute_force_rankings(
    queries: dict[str, torch.Tensor], documents: torch.Tensor, ids: list[str], k: int
) -> Ranked:
    """Every document scored one by one for each query text, the k best kept in order."""
    ranked = {}
    for query, vector in queries.items():
        scores = [(ids[j], float(documents[j].double() @ vector.double())) for j in range(len(ids))]
        ranked[query] = sorted(scores, key=lambda pair: -pair[1])[:k]
    return ranked


def definition_metrics(qrels: dict[str, dict[str, int]], ranked: Ranked) -> dict[str, float]:
    """The means over queries of P@k, Recall@k, AP@k (divided by every relevant item), binary nDCG@k and
    the reciprocal rank within the retrieved list, written from the definitions."""
    rows = []
    for query, relevant in qrels.items():
        hits = [doc in relevant for doc, _ in ranked[query]]
        row = {"mrr": next((1 / (i + 1) for i, hit in enumerate(hits) if hit), 0.0)}
        for k in KS:
            top = hits[:k]
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
            precisions = [sum(top[: i + 1]) / (i + 1) for i, hit in enumerate(top) if hit]
            row |= {
                f"p{k}": sum(top) / k,
                f"recall{k}": sum(top) / len(relevant),
                f"map{k}": sum(precisions) / len(relevant),
                f"ndcg{k}": sum(1 / math.log2(i + 2) for i, hit in enumerate(top) if hit) / ideal,
            }
        rows.append(row)
    return {name: statistics.fmean(row[name] for row in rows) for name in METRICS}


def library_metrics(qrels: dict[str, dict[str, int]], ranked: Ranked) -> dict[str, float]:
    """pytrec_eval's own means on the same rankings (beir's measure strings)."""
    measures = {"map_cut.1,10", "ndcg_cut.1,10", "recall.1,10", "P.1,10", "recip_rank"}
    run = {query: dict(pairs) for query, pairs in ranked.items()}
    scores = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    names = {
        f"{m}_{k}": f"{ours}{k}"
        for m, ours in (("ndcg_cut", "ndcg"), ("map_cut", "map"), ("recall", "recall"), ("P", "p"))
        for k in KS
    }
    names["recip_rank"] = "mrr"
    return {ours: statistics.fmean(values[m] for values in scores.values()) for m, ours in names.items()}


def reference_metrics(
    image_features: torch.Tensor, encode: callable, texts: dict[str, list[str]], prefix: str
) -> dict[str, dict[str, dict[str, float]]]:
    """Per task: (definitions, pytrec_eval) metrics of the rankings built here from the embeddings."""
    ids = [item_id(i) for i in range(ITEMS)]
    fields = {"image": image_features} | {column: encode(values) for column, values in texts.items()}
    truth = ground_truth()
    results = {}
    for name, doc_cols in DOC_COLS.items():
        weights = WEIGHTS.get(name, (1.0,))
        documents = F.normalize(sum(w * fields[c] for c, w in zip(doc_cols, weights, strict=True)), dim=-1)
        qrels = truth[QUERY_COLS[name]]
        queries = dict(zip(qrels, encode([prefix + q for q in qrels]), strict=True))
        ranked = brute_force_rankings(queries, documents, ids, max(KS))
        results[name] = {
            "definitions": definition_metrics(qrels, ranked),
            "library": library_metrics(qrels, ranked),
        }
    return results


def assert_matches(metrics: dict[str, float], references: dict, tolerance: float) -> None:
    """Every task metric of a record equals both references."""
    for name, reference in references.items():
        for metric in METRICS:
            got = metrics[f"KAGL/{name}/{metric}"]
            for kind, values in reference.items():
                assert got == pytest.approx(values[metric], abs=tolerance), (name, metric, kind)


# --- the protocol called on an embedded split


def test_every_metric_matches_pytrec_eval_and_the_definitions(tmp_path: Path) -> None:
    config, folder = write_benchmark(tmp_path)
    split = embedded_split()
    truth = ground_truth()
    known = [f"text {i}" for i in range(ITEMS)] + [f"desc {i}" for i in range(5)]
    known += [PREFIX + q for field in truth.values() for q in field]
    model = TextTable(known)
    benchmark = MarqoBenchmark(str(config), query_prefix=PREFIX)  # ground truth found beside the config
    metrics = benchmark(split, model, model.tokenize)

    def encode(texts: list[str]) -> torch.Tensor:
        return model.encode_text(model.tokenize(texts), normalize=True)

    captions = [f"text {i}" for i in range(ITEMS)]
    descriptions = [item_json(i)["description"] for i in range(ITEMS)]
    references = reference_metrics(
        split.image_features, encode, {"text": captions, "description": descriptions}, PREFIX
    )
    assert_matches(metrics, references, 1e-9)
    # relevant ids the split lacks are counted (text 0's second item, text 99's only one) and, as in
    # Marqo's run, kept in the recall and AP denominators above
    assert (
        metrics["KAGL/text-to-image/missing_relevant"] == 2
        and metrics["KAGL/season-to-product/missing_relevant"] == 0
    )
    assert metrics["KAGL/text-to-image/queries"] == 13 and metrics["queries"] == 13 + 3 + 2
    assert metrics["documents"] == ITEMS and metrics["tasks"] == 3
    for metric in METRICS:
        tasks = [metrics[f"KAGL/{name}/{metric}"] for name in DOC_COLS]
        assert metrics[metric] == pytest.approx(statistics.fmean(tasks), abs=1e-12)
    assert 0 < metrics["KAGL/category-to-product/map10"] < metrics["KAGL/category-to-product/p10"]


def test_a_repeated_id_keeps_its_first_place_and_later_score_and_the_query_id_is_dropped() -> None:
    """eval.py builds each query's results as a dict keyed by item_ID in rank order; beir then drops a
    document whose id equals the query."""
    run = ranked_run(
        ["red", "blue"],
        torch.tensor([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]], dtype=torch.float64),
        torch.tensor([[0, 1, 2], [3, 0, 1]]),
        ["a", "b", "a", "blue"],
    )
    assert run == {"red": {"a": 0.7, "b": 0.8}, "blue": {"a": 0.5, "b": 0.4}}
    assert list(run["red"]) == ["a", "b"]


def test_a_split_without_the_id_or_a_text_field_is_named(tmp_path: Path) -> None:
    config, _ = write_benchmark(tmp_path)
    split = embedded_split()
    model = TextTable([])
    with pytest.raises(ConfigError, match=r"'item_ID' is read from the sample field 'sku'.*columns.item_ID"):
        MarqoBenchmark(str(config), columns={"item_ID": "sku", "text": "caption"})(
            split, model, model.tokenize
        )
    bare = EmbeddedSplit(split.image_features, split.images, split.caption_features, [])
    with pytest.raises(ConfigError, match=r"'description'.*16 of the split's 16 samples lack"):
        MarqoBenchmark(str(config))(bare, model, model.tokenize)


# --- crafted dataset configs and ground truths


def crafted(tmp_path: Path, change: str) -> tuple[Path, Path]:
    """A clone layout whose config or ground truth has one crafted field."""
    config, folder = write_benchmark(tmp_path)
    payload = dataset_config()
    first = payload["tasks"][1]
    if change == "weights":
        first["doc_weights"] = ["0.9", 0.1]
    elif change == "query_col_string":
        first["query_col"] = "category1"
    elif change == "escaping_query_col":
        # without the check, this name reaches tmp_path/outside-image+text.json, a valid file
        first["query_col"] = ["x/../../../../outside"]
        (folder / "ground_truth_x").mkdir()
        (tmp_path / "outside-image+text.json").write_text(json.dumps({"Apparel": {"100": 1}}))
    elif change == "escaping_name":
        payload["name"] = ".."
    elif change == "grade":
        (folder / "ground_truth_category1-image+text.json").write_text(json.dumps({"Apparel": {"100": "1"}}))
    elif change == "no_tasks":
        del payload["tasks"]
    elif change == "duplicate_task":
        payload["tasks"].append(first)
    elif change == "not_json":
        config.write_text("{name: KAGL")
        return config, folder
    config.write_text(json.dumps(payload))
    return config, folder


CRAFTED = [
    ("weights", UserError, r"tasks\[1\].doc_weights=\['0.9', 0.1\] must list 2 numbers"),
    ("query_col_string", UserError, r"tasks\[1\].query_col='category1' must be a non-empty list"),
    ("escaping_query_col", UserError, r"tasks\[1\] \(its ground-truth file\)=.* is a path"),
    ("escaping_name", UserError, r"name='\.\.' names a folder"),
    ("grade", UserError, r"query 'Apparel' maps to \{'100': '1'\}, not a non-empty object of item_ID"),
    ("no_tasks", UserError, r"tasks must be a non-empty list of objects"),
    ("duplicate_task", UserError, r"task 'KAGL/category-to-product' is given twice"),
    ("not_json", UserError, r"KAGL.json' is not readable JSON"),
]


@pytest.mark.parametrize(("change", "error", "message"), CRAFTED, ids=[case[0] for case in CRAFTED])
def test_a_crafted_config_or_ground_truth_is_refused_when_the_protocol_is_built(
    tmp_path: Path, change: str, error: type[Exception], message: str
) -> None:
    config, _ = crafted(tmp_path, change)
    with pytest.raises(error, match=message):
        MarqoBenchmark(str(config))


def test_missing_files_and_bad_options_are_named(tmp_path: Path) -> None:
    config, folder = write_benchmark(tmp_path)
    with pytest.raises(ConfigError, match="protocol.marqo.dataset_config is not set"):
        MarqoBenchmark()
    with pytest.raises(MissingInputError, match="ground_truth_text-image.json' does not exist"):
        MarqoBenchmark(str(config), ground_truth=str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match=r"protocol.marqo.ks must be at least 1"):
        MarqoBenchmark(str(config), ks=[0, 10])
    relative = MarqoBenchmark("configs/KAGL.json", ground_truth="data/KAGL/gt_query_doc", root=str(tmp_path))
    assert [task.label for task in relative.tasks] == [f"KAGL/{name}" for name in DOC_COLS]


# --- the attributes protocol's trec_eval AP@10


def test_attributes_trec_map_equals_pytrec_eval_and_map10_keeps_its_definition() -> None:
    generator = torch.Generator().manual_seed(5)
    scores = torch.rand(6, 40, generator=generator)
    relevant = torch.rand(6, 40, generator=generator) < torch.tensor([0.05, 0.2, 0.4, 0.6, 0.8, 0.5])[:, None]
    relevant[:, 0] = True  # every query has a relevant item
    default, trec = ranking_metrics(scores, relevant), ranking_metrics(scores, relevant, trec_map=True)
    assert "map10_trec" not in default and torch.equal(default["map10"], trec["map10"])
    qrels = {f"q{q}": {f"d{d}": 1 for d in range(40) if relevant[q, d]} for q in range(6)}
    run = {f"q{q}": {f"d{d}": float(scores[q, d]) for d in range(40)} for q in range(6)}
    library = pytrec_eval.RelevanceEvaluator(qrels, {"map_cut.10"}).evaluate(run)
    expected = torch.tensor(
        [library[f"q{q}"]["map_cut_10"] for q in range(6)], dtype=trec["map10_trec"].dtype
    )
    assert torch.allclose(trec["map10_trec"], expected, atol=1e-6)
    assert (trec["map10_trec"] < trec["map10"] - 0.01).any()  # where more are relevant than fit in 10


# --- the published leaderboard


def test_the_published_rows_are_consistent_with_their_averages() -> None:
    """A transcription check: Avg* is the mean of the @1 and @10 columns and each averaged row the mean of
    the datasets' rows (each number rounded to 3 decimals by Marqo)."""
    payload = published_payload()
    assert payload["source"]["file"] == "LEADERBOARD.md" and payload["source"]["updated"] == "2024-08-09"
    rows = [dict(zip(payload["rows_columns"], cells, strict=True)) for cells in payload["rows"]]
    assert len(rows) == 24 * 6 and len({r["dataset"] for r in rows}) == 7
    for row in rows:
        for mean, first, last in (("AvgRecall", "Recall@1", "Recall@10"), ("AvgP", "P@1", "P@10")):
            if row[mean] is not None:
                assert row[mean] == pytest.approx((row[first] + row[last]) / 2, abs=0.001 + 1e-9)
    for cells in payload["averages"]:
        average = dict(zip(payload["averages_columns"], cells, strict=True))
        per_dataset = {}
        for row in rows:
            if row["task"] == average["task"]:
                per_dataset.setdefault(row["dataset"], []).append(row)
        assert len(per_dataset) == average["datasets"]
        position = [r["model"] for r in next(iter(per_dataset.values()))].index(average["model"])
        for column in payload["averages_columns"][3:]:
            if average[column] is not None:
                values = [dataset_rows[position][column] for dataset_rows in per_dataset.values()]
                assert average[column] == pytest.approx(statistics.fmean(values), abs=0.001)


# --- the evaluate command on shards: a checkpoint, its ONNX export, the leaderboard and the report


def noise_jpeg(seed: int) -> bytes:
    """Random pixels, so every document embeds apart from the others."""
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def marqo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Shards of the KAGL-like items, Marqo's files for them, tiny weights and an evaluation of them."""
    root = tmp_path_factory.mktemp("marqo")
    samples = []
    for i in range(ITEMS):
        sample = shard_sample(i, noise_jpeg(i), item_id(i), item_json(i)["category1"], [f"text {i}"])
        meta = json.loads(sample["json"]) | item_json(i)
        samples.append(sample | {"json": json.dumps(meta).encode()})
    shards = write_split(root / "shards" / "test", samples, shard_size=6)
    config, folder = write_benchmark(root / "marqo-FashionCLIP")
    ckpt = save_tiny_weights(root / "tiny.pt", seed=0)
    paths = {"root": root, "shards": shards, "config": config, "folder": folder, "ckpt": ckpt}
    done = run_entry("evaluate", *evaluate_args(paths, "torch", f"ckpt_path={ckpt}"), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return paths


def evaluate_args(paths: dict[str, Path], run: str, *extra: str) -> list[str]:
    """`python -m fashion_clip.evaluate` arguments for protocol=[marqo] on the shards."""
    return [
        "model=tiny",
        f"data.test={paths['shards']}",
        "protocol=[marqo]",
        f"protocol.marqo.dataset_config={paths['config'].relative_to(paths['root'])}",
        f"protocol.marqo.query_prefix='{PREFIX}'",
        "evaluation.num_workers=0",
        "evaluation.device=cpu",
        f"hydra.run.dir={paths['root'] / run}",
        *extra,
    ]


@pytest.mark.slow
def test_the_evaluate_command_scores_the_shards_as_the_references_do(marqo_run: dict[str, Path]) -> None:
    (record,) = read_results(marqo_run["root"] / "torch" / "evaluation_results.json")
    assert record.protocol == "marqo" and record.stage == "finetuned" and record.metrics["skipped"] == 0
    bundle, _ = load_tiny(marqo_run["ckpt"])
    split = embed_catalogue(
        bundle.model, bundle.tokenizer, ShardCatalogue(str(marqo_run["shards"]), bundle.val_transform), 8, 0
    )
    assert [r.product_id for r in split.images] == [item_id(i) for i in range(ITEMS)]

    @torch.no_grad()
    def encode(texts: list[str]) -> torch.Tensor:
        return bundle.model.encode_text(bundle.tokenizer(texts), normalize=True)

    texts = {
        "text": [r.caption for r in split.images],
        "description": [a["description"] for a in split.attributes],
    }
    assert_matches(record.metrics, reference_metrics(split.image_features, encode, texts, PREFIX), 1e-6)
    assert record.metrics["KAGL/text-to-image/recall10"] > 0  # some caption finds its item


@pytest.mark.slow
def test_the_run_and_the_report_lay_the_results_beside_the_published_rows(marqo_run: dict[str, Path]) -> None:
    run_dir = marqo_run["root"] / "torch"
    table = (run_dir / "leaderboard_marqo.md").read_text()
    (record,) = read_results(run_dir / "evaluation_results.json")
    recalls = [record.metrics[f"KAGL/text-to-image/recall{k}"] for k in KS]
    ours = f"| FashionCLIP-Tiny (finetuned) tiny.pt | ours | {statistics.fmean(recalls):.3f} |"
    assert ours in table
    assert (
        "| Marqo-FashionSigLIP | published | 0.334 | 0.179 | 0.489 | 0.293 |" in table
    )  # KAGL text-to-image
    assert "| Marqo-FashionSigLIP | published | 6 | 0.231 | 0.121 | 0.340 | 0.239 |" in table  # averaged
    assert "### Season-To-Product" in table and "## Polyvore" not in table
    csv_lines = (run_dir / "leaderboard_marqo.csv").read_text().splitlines()
    assert csv_lines[0] == "dataset,task,datasets,model,source,AvgRecall,Recall@1,Recall@10,AvgP,P@1,P@10,MRR"
    report_dir = marqo_run["root"] / "report"
    done = run_entry("report", run_dir, "--out", report_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (report_dir / "leaderboard_marqo.md").read_text() == table
    assert "marqo" in (report_dir / "comparison.md").read_text()


@pytest.mark.slow
def test_an_onnx_export_gets_the_same_numbers(marqo_run: dict[str, Path]) -> None:
    export = export_onnx_directory(TINY, marqo_run["ckpt"], marqo_run["root"] / "export")
    done = run_entry("evaluate", *evaluate_args(marqo_run, "onnx", f"onnx={export}"), cwd=marqo_run["root"])
    assert done.returncode == 0, done.stderr[-3000:]
    (onnx,) = read_results(marqo_run["root"] / "onnx" / "evaluation_results.json")
    (torch_record,) = read_results(marqo_run["root"] / "torch" / "evaluation_results.json")
    assert onnx.stage == "finetuned" and onnx.checkpoint == str(export.resolve())
    assert onnx.metrics.keys() == torch_record.metrics.keys()
    for key, value in torch_record.metrics.items():
        assert onnx.metrics[key] == pytest.approx(value, abs=1e-6), key


CLI_REFUSALS = [
    ("weights", "doc_weights=['0.9', 0.1] must list 2 numbers"),
    ("escaping_query_col", "is a path"),
]


@pytest.mark.parametrize(("change", "message"), CLI_REFUSALS, ids=[case[0] for case in CLI_REFUSALS])
def test_the_command_exits_2_naming_the_crafted_field(tmp_path: Path, change: str, message: str) -> None:
    config, _ = crafted(tmp_path, change)
    args = [
        "protocol=[marqo]",
        f"protocol.marqo.dataset_config={config}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    done = run_entry("evaluate", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert message in done.stderr and str(config) in done.stderr
