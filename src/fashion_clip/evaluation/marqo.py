"""The `marqo` protocol: Marqo's fashion benchmark (github.com/marqo-ai/marqo-FashionCLIP, eval.py) on a
split imported from one of its hub datasets. Each task of Marqo's dataset config ranks the split's
documents (the image embedding, or the re-normalised weighted sum of the image and text fields'
embeddings) for every query of its ground-truth file, and the top max(ks) are scored as beir's
EvaluateRetrieval scores them: pytrec_eval (trec_eval's definitions) for nDCG@k, MAP@k, Recall@k and P@k,
plus MRR over the retrieved top max(ks) as Marqo's utils/metrics.py averages it.

The dataset config and the ground-truth files are not ours: every field is checked before any model is
built, and the file a task names must be a plain file in the ground-truth folder.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import pytrec_eval
import torch
import torch.nn.functional as F

from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.retrieval.embedding import EmbeddedSplit, embed_texts
from fashion_clip.utils.files import plain_file_name
from fashion_clip.utils.launch import from_launch_dir

log = logging.getLogger(__name__)

KEY = "protocol.marqo"
IMAGE = "image"
# the sample fields an ImageRecord holds; any other name is a field of the sample's json
RECORD_FIELDS = ("product_id", "caption")
# the column Marqo's eval.py takes document ids from
ID_COLUMN = "item_ID"
DEFAULT_COLUMNS = {ID_COLUMN: "product_id", "text": "caption"}
CONFIG_FIX = "use Marqo's configs/<dataset>.json from github.com/marqo-ai/marqo-FashionCLIP, or fix the field"
TRUTH_FIX = "use Marqo's data/<dataset>/gt_query_doc files as published: {query text: {item_ID: 1, ...}}"
# pytrec_eval measure -> our metric name (ks appended): beir's four, each at every k
TREC_MEASURES = {"ndcg_cut": "ndcg", "map_cut": "map", "recall": "recall", "P": "p"}
RECIPROCAL_RANK = "recip_rank"

Tokenizer = Callable[[list[str]], torch.Tensor]
Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


class BenchmarkFileError(UserError, ValueError):
    """A dataset config or ground-truth file that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class MarqoTask:
    """One query column of a task: its ground truth and how its documents are made."""

    label: str  # `<dataset>/<task>`, the prefix of its metric keys
    query_col: str
    doc_cols: tuple[str, ...]
    doc_weights: tuple[float, ...]  # one per doc col; unused for a single-field document, as in eval.py
    qrels: Qrels


def read_json_file(path: Path, fix: str) -> Any:
    """The file's JSON value, or an error naming the file."""
    if not path.is_file():
        raise MissingInputError(f"'{path}' does not exist: {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchmarkFileError(f"'{path}' is not readable JSON ({e}): {fix}") from e


def check_label(value: object, key: str, path: Path) -> str:
    """A name that becomes part of metric keys and table rows: a non-empty string without '/'."""
    if not isinstance(value, str) or not value.strip() or "/" in value or not value.isprintable():
        raise BenchmarkFileError(
            f"'{path}': {key}={value!r} must be a non-empty printable string without '/': {CONFIG_FIX}"
        )
    return value


def check_columns(value: object, key: str, path: Path) -> tuple[str, ...]:
    """A task's column list: Marqo's configs give each as a JSON list of names."""
    if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
        raise BenchmarkFileError(
            f"'{path}': {key}={value!r} must be a non-empty list of column names: {CONFIG_FIX}"
        )
    if len(set(value)) != len(value):
        raise BenchmarkFileError(f"'{path}': {key}={value!r} names a column twice: {CONFIG_FIX}")
    return tuple(value)


def is_number(value: object) -> bool:
    """A finite JSON number (a boolean is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_weights(value: object, doc_cols: tuple[str, ...], key: str, path: Path) -> tuple[float, ...]:
    """A multi-field document's weights, one finite number per doc col (eval.py asserts as much)."""
    if len(doc_cols) == 1:
        return (1.0,)
    if not isinstance(value, list) or len(value) != len(doc_cols) or not all(map(is_number, value)):
        raise BenchmarkFileError(
            f"'{path}': {key}={value!r} must list {len(doc_cols)} numbers, one per doc_col "
            f"{list(doc_cols)}: {CONFIG_FIX}"
        )
    return tuple(float(w) for w in value)


def check_ground_truth(payload: object, path: Path) -> Qrels:
    """Marqo's ground truth: query text -> {item_ID: grade}, grades whole numbers, one at least positive."""
    if not isinstance(payload, dict) or not payload:
        raise BenchmarkFileError(f"'{path}' must hold a non-empty JSON object of queries: {TRUTH_FIX}")
    for query, relevant in payload.items():
        grades = relevant.values() if isinstance(relevant, dict) else ()
        valid = all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in grades)
        if not grades or not valid or not any(g > 0 for g in grades):
            raise BenchmarkFileError(
                f"'{path}': query {query!r} maps to {str(relevant)[:200]}, not a non-empty object of "
                f"item_ID -> whole-number grade with one grade above 0: {TRUTH_FIX}"
            )
    return payload


def ground_truth_file(folder: Path, query_col: str, doc_cols: tuple[str, ...], key: str, path: Path) -> Path:
    """`ground_truth_{query_col}-{doc cols joined by +}.json` in `folder`, as eval.py names it; a name that
    would lead out of the folder (a column holding '/' or '..') is refused."""
    name = f"ground_truth_{query_col}-{'+'.join(doc_cols)}.json"
    return folder / plain_file_name(name, path, f"{key} (its ground-truth file)", CONFIG_FIX)


def default_truth_folder(config_path: Path, name: str) -> Path:
    """Where a clone of Marqo's repository keeps the ground truth: data/<name>/gt_query_doc."""
    folder = plain_file_name(name, config_path, "name", CONFIG_FIX)
    return config_path.parent.parent / "data" / folder / "gt_query_doc"


def read_tasks(config_path: Path, truth_folder: Path | None) -> list[MarqoTask]:
    """Every (task, query column) of Marqo's dataset config with its checked ground truth."""
    config = read_json_file(config_path, f"give {KEY}.dataset_config (Marqo's configs/<dataset>.json)")
    if not isinstance(config, dict):
        raise BenchmarkFileError(f"'{config_path}' must hold a JSON object with name and tasks: {CONFIG_FIX}")
    name = check_label(config.get("name"), "name", config_path)
    folder = truth_folder or default_truth_folder(config_path, name)
    tasks = config.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
        raise BenchmarkFileError(f"'{config_path}': tasks must be a non-empty list of objects: {CONFIG_FIX}")
    read = []
    for i, task in enumerate(tasks):
        key = f"tasks[{i}]"
        task_name = check_label(task.get("name"), f"{key}.name", config_path)
        queries = check_columns(task.get("query_col"), f"{key}.query_col", config_path)
        doc_cols = check_columns(task.get("doc_col"), f"{key}.doc_col", config_path)
        weights = check_weights(task.get("doc_weights"), doc_cols, f"{key}.doc_weights", config_path)
        for query_col in queries:
            label = f"{name}/{task_name}" if len(queries) == 1 else f"{name}/{task_name} ({query_col})"
            path = ground_truth_file(folder, query_col, doc_cols, key, config_path)
            qrels = check_ground_truth(read_json_file(path, TRUTH_FIX), path)
            read.append(MarqoTask(label, query_col, doc_cols, weights, qrels))
    repeated = [label for label, n in Counter(t.label for t in read).items() if n > 1]
    if repeated:
        raise BenchmarkFileError(f"'{config_path}': task {repeated[0]!r} is given twice: {CONFIG_FIX}")
    return read


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Distinct positive cutoffs, ascending."""
    if isinstance(ks, str) or not ks or not all(isinstance(k, int) and not isinstance(k, bool) for k in ks):
        raise ConfigError(f"{KEY}.ks must be a non-empty list of whole numbers, got {ks!r}")
    if min(ks) < 1:
        raise ConfigError(f"{KEY}.ks must be at least 1, got {list(ks)}")
    return tuple(sorted(set(ks)))


def check_positive(value: object, key: str) -> int:
    """A whole number of at least 1, or a config error naming the key."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{KEY}.{key} must be a whole number of at least 1, got {value!r}")
    return value


def check_column_map(columns: Mapping[str, str]) -> dict[str, str]:
    """Marqo column -> sample field, every name a non-empty string."""
    columns = dict(columns)
    if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in columns.items()):
        raise ConfigError(f"{KEY}.columns must map Marqo's column names to sample fields, got {columns!r}")
    return columns


def sample_values(split: EmbeddedSplit, field: str) -> list[str | None]:
    """Each image's value of a sample field: its product id, its first caption or a json field's text."""
    if field in RECORD_FIELDS:
        return [getattr(record, field) or None for record in split.images]
    return [attributes.get(field) for attributes in split.attributes or [{}] * len(split.images)]


def available_fields(split: EmbeddedSplit) -> str:
    """The fields a split's samples have, for messages."""
    return ", ".join([*RECORD_FIELDS, *sorted({name for row in split.attributes for name in row})])


def column_values(split: EmbeddedSplit, column: str, field: str, required: bool) -> list[str]:
    """A Marqo column's value for every document; a column no sample has is an error, and so is a
    missing id (`required`); a text missing from some samples is embedded as "" (logged)."""
    values = sample_values(split, field)
    missing = sum(value is None for value in values)
    if missing == len(values) or (required and missing):
        raise ConfigError(
            f"{KEY}: Marqo's column {column!r} is read from the sample field {field!r}, which {missing} of "
            f"the split's {len(values)} samples lack (they have: {available_fields(split)}); import the "
            f"dataset with that column kept, or map it with {KEY}.columns.{column}=<field>"
        )
    if missing:
        log.warning(
            "%s: %d of %d samples have no %r: embedded as empty text", KEY, missing, len(values), field
        )
    return [value or "" for value in values]


def embed_distinct(texts: list[str], embed: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """Each text's embedding, every distinct text embedded once."""
    distinct = list(dict.fromkeys(texts))
    rows = {text: row for row, text in enumerate(distinct)}
    return embed(distinct)[torch.tensor([rows[text] for text in texts])]


def document_embeddings(fields: Mapping[str, torch.Tensor], task: MarqoTask) -> torch.Tensor:
    """eval.py's documents: the one field's unit-norm embeddings, or the weighted sum normalised again."""
    if len(task.doc_cols) == 1:
        return fields[task.doc_cols[0]]
    weighted = sum(w * fields[c] for c, w in zip(task.doc_cols, task.doc_weights, strict=True))
    return F.normalize(weighted, dim=-1)


def top_documents(
    queries: torch.Tensor, documents: torch.Tensor, k: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's k best documents by cosine (unit-norm dot products), best first: (Q, k) scores and rows
    on the CPU, `chunk_size` queries at a time so memory stays O(chunk x documents)."""
    k = min(k, documents.shape[0])
    tops = [
        (queries[s : s + chunk_size] @ documents.T).topk(k, dim=1) for s in range(0, len(queries), chunk_size)
    ]
    return torch.cat([t.values for t in tops]).cpu(), torch.cat([t.indices for t in tops]).cpu()


def ranked_run(queries: list[str], scores: torch.Tensor, rows: torch.Tensor, ids: list[str]) -> Run:
    """Marqo's retrieval results: query -> {item_ID: score} built in rank order as eval.py builds it (an id
    retrieved twice keeps its first place in the dict and its later score), with a document whose id equals
    the query dropped, as beir's `ignore_identical_ids` does before Marqo's MRR reads the same dict."""
    run = {}
    for query, query_scores, query_rows in zip(queries, scores.tolist(), rows.tolist(), strict=True):
        ranked = {ids[row]: score for row, score in zip(query_rows, query_scores, strict=True)}
        run[query] = {doc: score for doc, score in ranked.items() if doc != query}
    return run


def metric_name(measure: str) -> str:
    """Our name of a pytrec_eval result key: `ndcg_cut_10` -> `ndcg10`, `P_1` -> `p1`, `recip_rank` -> mrr."""
    if measure == RECIPROCAL_RANK:
        return "mrr"
    base, k = measure.rsplit("_", 1)
    return f"{TREC_MEASURES[base]}{k}"


def per_query_metrics(qrels: Qrels, run: Run, ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """trec_eval's value of each measure for every query pytrec_eval evaluates, under our metric names."""
    cutoffs = ",".join(map(str, ks))
    measures = {f"{measure}.{cutoffs}" for measure in TREC_MEASURES} | {RECIPROCAL_RANK}
    evaluated = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    return {query: {metric_name(m): v for m, v in values.items()} for query, values in evaluated.items()}


def metric_names(ks: Sequence[int]) -> list[str]:
    """Every metric a task reports: beir's four at each k, then MRR."""
    return [f"{name}{k}" for name in TREC_MEASURES.values() for k in ks] + ["mrr"]


def run_metrics(qrels: Qrels, run: Run, ks: Sequence[int]) -> dict[str, float]:
    """beir's means over the queries pytrec_eval evaluates, and MRR summed over them and divided by every
    ground-truth query, as Marqo's utils/metrics.py divides it (both without their 5-decimal rounding)."""
    per_query = per_query_metrics(qrels, run, ks)
    sums = {name: math.fsum(row[name] for row in per_query.values()) for name in metric_names(ks)}
    return {name: total / (len(qrels) if name == "mrr" else len(per_query)) for name, total in sums.items()}


def missing_relevant(qrels: Qrels, ids: set[str]) -> int:
    """Items the ground truth marks relevant that are not among the documents: counted as missed, as in
    Marqo's run, but a sign the split is not the whole hub dataset."""
    return len({doc for relevant in qrels.values() for doc, grade in relevant.items() if grade > 0} - ids)


class MarqoBenchmark:
    """`protocol=marqo`: built (and every file checked) when the run's protocols are, called with the split.

    `dataset_config` is Marqo's configs/<dataset>.json; `ground_truth` the folder of its
    ground_truth_*.json files (default: data/<name>/gt_query_doc of the clone the config lies in); both
    read from `root`, where the user launched. `query_prefix` goes before every query (eval.py's
    --query-prefix), `ks` are the cutoffs (MRR reads the top max(ks)), `columns` says which sample field
    holds each Marqo column (item_ID the documents' ids, text a document text field; other columns are
    json fields of the same name). Texts are embedded `batch_size` at a time, queries scored `chunk_size`
    at a time.
    """

    def __init__(
        self,
        dataset_config: str | None = None,
        ground_truth: str | None = None,
        root: str = ".",
        query_prefix: str = "",
        ks: Sequence[int] = (1, 10),
        columns: Mapping[str, str] | None = None,
        batch_size: int = 256,
        chunk_size: int = 256,
    ) -> None:
        if not dataset_config:
            raise ConfigError(
                f"{KEY}.dataset_config is not set: give Marqo's dataset config, e.g. "
                f"{KEY}.dataset_config=marqo-FashionCLIP/configs/KAGL.json from a clone of "
                "github.com/marqo-ai/marqo-FashionCLIP (docs/evaluation.md)"
            )
        if not isinstance(query_prefix, str):
            raise ConfigError(f"{KEY}.query_prefix must be a string, got {query_prefix!r}")
        self.ks = check_ks(ks)
        self.columns = check_column_map(DEFAULT_COLUMNS if columns is None else columns)
        self.batch_size = check_positive(batch_size, "batch_size")
        self.chunk_size = check_positive(chunk_size, "chunk_size")
        self.query_prefix = query_prefix
        truth = from_launch_dir(root, ground_truth) if ground_truth else None
        self.tasks = read_tasks(from_launch_dir(root, dataset_config), truth)

    def field(self, column: str) -> str:
        """The sample field a Marqo column is read from."""
        return self.columns.get(column, column)

    def document_ids(self, split: EmbeddedSplit) -> list[str]:
        """Every document's item_ID, as the ground truth names items."""
        ids = column_values(split, ID_COLUMN, self.field(ID_COLUMN), required=True)
        repeated = len(ids) - len(set(ids))
        if repeated:
            log.warning("%s: %d documents repeat an item_ID; a query keeps one score per id", KEY, repeated)
        return ids

    @torch.inference_mode()
    def __call__(
        self,
        split: EmbeddedSplit,
        model: open_clip.CLIP,
        tokenizer: Tokenizer,
        device: str | torch.device = "cpu",
    ) -> dict[str, float]:
        """Per task `<dataset>/<task>/<metric>` (ndcg, map, recall, p at each k; mrr; queries;
        missing_relevant), each metric's mean over the tasks, and the documents, tasks and queries counted.
        `model` is moved to `device` and put in eval mode."""
        device = torch.device(device)
        model.eval().to(device)
        ids = self.document_ids(split)

        def embed(texts: list[str]) -> torch.Tensor:
            """Unit-norm text embeddings on `device`."""
            return embed_texts(model, tokenizer, texts, self.batch_size, device).to(device)

        columns = dict.fromkeys(c for task in self.tasks for c in task.doc_cols if c != IMAGE)
        texts = {column: column_values(split, column, self.field(column), False) for column in columns}
        fields = {IMAGE: split.image_features.to(device).float()}
        fields |= {column: embed_distinct(values, embed) for column, values in texts.items()}
        metrics: dict[str, float] = {}
        for task in self.tasks:
            queries = list(task.qrels)
            scores, rows = top_documents(
                embed([self.query_prefix + q for q in queries]),
                document_embeddings(fields, task),
                max(self.ks),
                self.chunk_size,
            )
            values = run_metrics(task.qrels, ranked_run(queries, scores, rows, ids), self.ks)
            missing = missing_relevant(task.qrels, set(ids))
            if missing:
                log.warning("%s: %s: %d relevant items are not in the split", KEY, task.label, missing)
            counts = {"queries": len(queries), "missing_relevant": missing}
            metrics |= {f"{task.label}/{name}": float(v) for name, v in (values | counts).items()}
        means = {
            name: math.fsum(metrics[f"{task.label}/{name}"] for task in self.tasks) / len(self.tasks)
            for name in metric_names(self.ks)
        }
        queries = sum(len(task.qrels) for task in self.tasks)
        return means | {"documents": len(ids), "tasks": len(self.tasks), "queries": queries} | metrics
