"""Sample metadata of any JSON type (numbers, booleans, null, lists, objects, HTML) read from shards: its
text, the gallery and search pages and category tables showing it escaped, and attribute search
scoring numbers and lists as their text (against a brute-force ranking)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers.search_index import index_of, load_tiny
from helpers.shard_samples import jpeg_bytes, shard_sample, write_split
from helpers.tiny_model import save_tiny_weights

from fashion_clip.data.catalogue_reader import ShardCatalogue
from fashion_clip.evaluation.attributes import attribute_search, ranking_metrics
from fashion_clip.evaluation.run import evaluate
from fashion_clip.records import read_results, unflatten
from fashion_clip.retrieval.embedding import ImageRecord, embed_catalogue
from fashion_clip.retrieval.index_file import save_index
from fashion_clip.retrieval.page import render_page
from fashion_clip.retrieval.search import ProductHit
from fashion_clip.search import main as search_main
from fashion_clip.utils.metadata_text import metadata_text

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
# each product's json (besides product_id and captions) and, below, the text every reader must make of it
PRODUCTS = [
    {"category": SCRIPT, "colour": ["red", "blue"], "sale": True, "size": 38},
    {"category": 3, "colour": "red", "sale": False, "size": 40},
    {"category": 3, "colour": ["red", "blue"], "sale": True, "size": 38.5, "fit": None},
    {"category": SCRIPT, "colour": ["blue"], "sale": None, "size": 40, "details": {"neck": "v"}},
    {"category": ["dress", "summer"], "colour": [], "sale": False, "size": 38},
]
TEXTS = [
    {"category": SCRIPT, "colour": "red, blue", "sale": "true", "size": "38"},
    {"category": "3", "colour": "red", "sale": "false", "size": "40"},
    {"category": "3", "colour": "red, blue", "sale": "true", "size": "38.5"},
    {"category": SCRIPT, "colour": "blue", "size": "40", "details": '{"neck":"v"}'},
    {"category": "dress, summer", "sale": "false", "size": "38"},
]
VIEWS = 2
TEMPLATES = ("a photo of {}", "{}")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"),
        (38.5, "38.5"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        ("  red ", "red"),
        (" ", ""),
        (["red", "blue"], "red, blue"),
        ([None, "", "wool", 2], "wool, 2"),
        ([], ""),
        ({"neck": "v", "sizes": [1, 2], "é": True}, '{"neck":"v","sizes":[1,2],"é":true}'),
        ({}, ""),
    ],
)
def test_metadata_text_of_each_json_type(value: object, text: str) -> None:
    assert metadata_text(value) == text


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose `demo/test` holds VIEWS images per product with PRODUCTS' json (the shard writer)."""
    root = tmp_path_factory.mktemp("metadata")
    samples = []
    for p, meta in enumerate(PRODUCTS):
        for view in range(VIEWS):
            index = p * VIEWS + view
            sample = shard_sample(index, jpeg_bytes((40 * p, 100 * view, 60)), f"p{p}")
            captions = [f"caption of product {p}"]
            sample["json"] = json.dumps({"product_id": f"p{p}", "captions": captions, **meta}).encode()
            samples.append(sample)
    write_split(root / "demo" / "test", samples, shard_size=4, name="demo")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pt", seed=0)


def assert_escaped(page: str) -> None:
    """Every value shows as escaped text: no raw markup, numbers and lists as their text."""
    assert "<script" not in page and ESCAPED in page
    assert "&middot; 3<" in page and "dress, summer" in page


def test_the_reader_turns_every_value_into_text(data_dir: Path, weights: Path) -> None:
    bundle, _ = load_tiny(weights)
    items = list(ShardCatalogue(str(data_dir / "demo" / "test"), bundle.val_transform))
    assert [item["category"] for item in items] == [t["category"] for t in TEXTS for _ in range(VIEWS)]
    assert [item["attributes"] for item in items] == [t for t in TEXTS for _ in range(VIEWS)]


def test_evaluate_writes_the_gallery_and_tables_with_every_value_escaped(
    data_dir: Path, weights: Path, compose_train
) -> None:
    cfg = compose_train(
        "protocol=[full,zeroshot,attributes]",
        "protocol.attributes.fields=[size,sale]",
        f"ckpt_path={weights}",
        "evaluation.gallery=true",
        "evaluation.gallery_size=3",
        "evaluation.num_workers=0",
        config_name="evaluate",
        data_dir=data_dir,
    )
    evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    gallery = (out / "gallery.html").read_text(encoding="utf-8")
    assert_escaped(gallery)
    assert "(3) ranks" in gallery or f"({ESCAPED}) ranks" in gallery  # the true product's category
    for protocol in ("full", "attributes"):
        table = (out / f"categories_{protocol}.md").read_text(encoding="utf-8")
        rows = {line.split(" | ")[0].removeprefix("| ") for line in table.splitlines()[4:]}
        assert rows == {ESCAPED, "3", "dress, summer"}, protocol
    records = {r.protocol: r for r in read_results(out / "evaluation_results.json")}
    assert records["zeroshot"].metrics["unlabelled"] == 0
    assert {"size/queries", "sale/queries", "colour/queries"} <= set(records["attributes"].metrics)


def test_search_page_shows_every_value_escaped(data_dir: Path, weights: Path, tmp_path: Path) -> None:
    bundle, identity = load_tiny(weights)
    index = save_index(index_of(bundle, identity, data_dir / "demo" / "test"), tmp_path / "index.pt")
    page = tmp_path / "results.html"
    k = len(PRODUCTS)  # every product, so every category is on the page
    assert search_main(["red dress", "--index", str(index), "--k", str(k), "--html", str(page)]) == 0
    assert_escaped(page.read_text(encoding="utf-8"))


def test_search_page_shows_raw_values_of_an_index_written_before_metadata_became_text() -> None:
    categories = [3, ["red", "blue"], {"a": "<b>"}, True, None, SCRIPT]
    hits = [
        ProductHit(rank + 1, 0.5, rank, ImageRecord(f"k{rank}", f"p{rank}", category, "c", "gone.tar"))
        for rank, category in enumerate(categories)
    ]
    page = render_page("q", hits)
    for shown in ("3", "red, blue", "{&quot;a&quot;:&quot;&lt;b&gt;&quot;}", "true", "-", ESCAPED):
        assert f"&middot; {shown}</div>" in page
    assert "<script" not in page and '<b>"' not in page


def product_embeddings(features: torch.Tensor, images: list[ImageRecord]) -> dict[str, torch.Tensor]:
    """Each product's normalised mean image embedding, summed one image at a time."""
    sums: dict[str, torch.Tensor] = {}
    for row, record in enumerate(images):
        sums[record.product_id] = sums.get(record.product_id, 0) + features[row]
    return {product: F.normalize(total, dim=0) for product, total in sums.items()}


def test_attribute_search_scores_numbers_booleans_and_lists_as_their_text(
    data_dir: Path, weights: Path
) -> None:
    bundle, _ = load_tiny(weights)
    dataset = ShardCatalogue(str(data_dir / "demo" / "test"), bundle.val_transform)
    split = embed_catalogue(bundle.model, bundle.tokenizer, dataset, batch_size=16, num_workers=0)
    result = attribute_search(
        split, bundle.model, bundle.tokenizer, fields=["size", "sale"], templates=TEMPLATES
    )
    products = product_embeddings(split.image_features, split.images)
    for field in ("category", "colour", "size", "sale"):
        gallery = [p for p, texts in enumerate(TEXTS) if field in texts]
        values = sorted({TEXTS[p][field] for p in gallery})
        assert result[f"{field}/values"] == result[f"{field}/queries"] == len(values), field
        rows = []
        for value in values:
            with torch.no_grad():
                prompts = bundle.model.encode_text(bundle.tokenizer([t.format(value) for t in TEMPLATES]))
            query = F.normalize(F.normalize(prompts, dim=-1).mean(dim=0), dim=0)
            scores = torch.tensor([float(products[f"p{p}"] @ query) for p in gallery])
            relevant = torch.tensor([TEXTS[p][field] == value for p in gallery])
            rows.append(
                {name: float(v[0]) for name, v in ranking_metrics(scores[None], relevant[None]).items()}
            )
        for name in rows[0]:
            expected = sum(row[name] for row in rows) / len(rows)
            assert result[f"{field}/{name}"] == pytest.approx(expected, abs=1e-5), (field, name)
    assert set(unflatten(result)) == {"3", SCRIPT, "dress, summer"}
