"""Indexing shards and image folders, the index file format, model identity, queries and the HTML page."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from helpers.search_index import brute_force_products, index_of, load_tiny
from helpers.tiny_model import TINY, save_tiny_weights
from PIL import Image

from fashion_clip.data.manifest import read_manifest
from fashion_clip.data.shard_spec import resolve_shards
from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.models.identity import check_same_model, clip_config, identify, weights_fingerprint
from fashion_clip.retrieval.embedding import ImageRecord
from fashion_clip.retrieval.index_file import FORMAT_VERSION, IndexData, load_index, save_index
from fashion_clip.retrieval.page import image_location, read_catalogue_image, render_page, write_page
from fashion_clip.retrieval.query_model import build_query_model, query_config
from fashion_clip.retrieval.search import (
    ProductHit,
    encode_image_query,
    encode_text_query,
    load_query_image,
    search,
)

DATA_URI = '<img src="data:image/jpeg;base64,'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    ckpt = save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pt", seed=0)
    return (*load_tiny(ckpt), ckpt)


@pytest.fixture(scope="module")
def shard_index(tiny, small_catalogue: Path) -> IndexData:
    bundle, identity, _ = tiny
    return index_of(bundle, identity, small_catalogue / "demo" / "test")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Five PNGs in two category folders, three with caption sidecars."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i, (category, caption) in enumerate(
        [
            ("boots", "black leather ankle boots"),
            ("boots", None),
            ("bags", "red tote"),
            ("bags", None),
            ("", "hat"),
        ]
    ):
        folder = root / category
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(folder / f"item{i}.png")
        if caption:
            (folder / f"item{i}.txt").write_text(caption + "\n")
    return root


def test_shard_index_covers_the_split_with_unit_norm_fp16_rows(shard_index: IndexData, small_catalogue: Path):
    split = small_catalogue / "demo" / "test"
    assert len(shard_index) == read_manifest(split).num_samples
    assert shard_index.embeddings.dtype == torch.float16
    assert torch.allclose(shard_index.embeddings.float().norm(dim=1), torch.ones(len(shard_index)), atol=2e-3)
    samples = list(wds.WebDataset(resolve_shards(str(split)), shardshuffle=False))
    assert [r.key for r in shard_index.records] == [s["__key__"] for s in samples]
    for record, sample in zip(shard_index.records, samples, strict=True):
        meta = json.loads(sample["json"])
        assert (record.product_id, record.category, record.caption) == (
            meta["product_id"],
            meta["category"],
            meta["captions"][0],
        )
        assert record.source == sample["__url__"]
    assert shard_index.num_products == 16 and shard_index.catalogue == str(split)


def test_index_file_loads_with_weights_only_and_round_trips(shard_index: IndexData, tmp_path: Path):
    path = save_index(shard_index, tmp_path / "index.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["version"] == FORMAT_VERSION and raw["embeddings"].dtype == torch.float16
    assert raw["model"]["fingerprint"] == shard_index.model.fingerprint and raw["model"]["embed_dim"] == 128
    loaded = load_index(path)
    assert torch.equal(loaded.embeddings, shard_index.embeddings)
    assert loaded.records == shard_index.records and loaded.model == shard_index.model
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_existing_index_is_kept_unless_overwrite(shard_index: IndexData, tmp_path: Path):
    path = tmp_path / "index.pt"
    path.write_text("user data")
    with pytest.raises(ConfigError, match="overwrite=true"):
        save_index(shard_index, path)
    assert path.read_text() == "user data"
    save_index(shard_index, path, overwrite=True)
    assert len(load_index(path)) == len(shard_index)


def test_unreadable_index_files_are_user_errors(shard_index: IndexData, tmp_path: Path):
    with pytest.raises(MissingInputError, match="missing.pt"):
        load_index(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read index .*junk.pt"):
        load_index(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(UserError, match="not a fashion-clip index"):
        load_index(tmp_path / "model.pt")
    path = save_index(shard_index, tmp_path / "future.pt")
    torch.save({**torch.load(path, weights_only=True), "version": FORMAT_VERSION + 1}, path)
    with pytest.raises(UserError, match=f"format version {FORMAT_VERSION + 1}"):
        load_index(path)


def test_image_folder_index_reads_sidecar_captions_and_categories(tiny, image_folder: Path):
    bundle, identity, _ = tiny
    index = index_of(bundle, identity, image_folder)
    by_key = {r.key: r for r in index.records}
    assert set(by_key) == {
        "boots/item0.png",
        "boots/item1.png",
        "bags/item2.png",
        "bags/item3.png",
        "item4.png",
    }
    assert by_key["boots/item0.png"] == ImageRecord(
        "boots/item0.png",
        "item0",
        "boots",
        "black leather ankle boots",
        str(image_folder / "boots/item0.png"),
    )
    assert by_key["bags/item3.png"].caption == "item3" and by_key["item4.png"].category is None
    for record in index.records:  # thumbnails come back pixel for pixel from the file
        original = np.asarray(Image.open(image_folder / record.key).convert("RGB"))
        assert np.array_equal(np.asarray(read_catalogue_image(record.source, record.key)), original)


def test_shard_thumbnails_are_the_indexed_member(shard_index: IndexData):
    record = shard_index.records[5]
    sample = next(s for s in wds.WebDataset(record.source, shardshuffle=False) if s["__key__"] == record.key)
    expected = np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB"))
    assert np.array_equal(np.asarray(read_catalogue_image(record.source, record.key)), expected)
    assert image_location(record.source, record.key) == f"{record.source}#{record.key}"
    assert image_location("/photos/boots/a.png", "boots/a.png") == "/photos/boots/a.png"
    with pytest.raises(KeyError, match="no_such_key"):
        read_catalogue_image(record.source, "no_such_key")


def test_catalogue_image_as_query_finds_its_own_product_first(tiny, shard_index: IndexData):
    bundle, _, _ = tiny
    for row in (0, 11, len(shard_index) - 1):
        record = shard_index.records[row]
        query = encode_image_query(bundle, read_catalogue_image(record.source, record.key))
        hits = search(shard_index, query, 5)
        assert hits[0].record.product_id == record.product_id and hits[0].row == row
        assert hits[0].score == pytest.approx(1.0, abs=2e-3)


def test_text_query_ranking_equals_brute_force(tiny, shard_index: IndexData):
    bundle, _, _ = tiny
    query = encode_text_query(bundle, "black leather ankle boots")
    assert query.norm() == pytest.approx(1.0, abs=1e-5)
    hits = search(shard_index, query, 7)
    expected = brute_force_products(shard_index, query, 7)
    assert [(h.record.product_id, h.score) for h in hits] == [
        (p, pytest.approx(s, abs=1e-5)) for p, s in expected
    ]
    with pytest.raises(ConfigError, match="text query is empty"):
        encode_text_query(bundle, "  ")


def test_fingerprint_follows_the_weights(tiny):
    bundle, identity, ckpt = tiny
    same, same_identity = load_tiny(ckpt)
    assert weights_fingerprint(same.model) == identity.fingerprint
    check_same_model(identity, same_identity)
    with torch.no_grad():
        same.model.logit_scale.add_(1e-3)
    assert weights_fingerprint(same.model) != identity.fingerprint


def test_query_model_with_other_weights_is_refused(tiny, shard_index: IndexData, tmp_path: Path):
    _, identity, ckpt = tiny
    rebuilt = build_query_model(shard_index.model)
    assert weights_fingerprint(rebuilt.model) == identity.fingerprint
    other = save_tiny_weights(tmp_path / "other.pt", seed=1)
    with pytest.raises(ConfigError) as err:
        build_query_model(shard_index.model, ckpt_path=str(other))
    message = str(err.value)
    assert (
        f"index built with {TINY} (ckpt={ckpt}" in message
        and f"query model is {TINY} (ckpt={other}" in message
    )
    assert "rebuild the index or pass the same model" in message
    other_identity = identify(load_tiny(other)[0].model, clip_config(TINY), None)
    with pytest.raises(ConfigError, match="random init"):
        check_same_model(other_identity, identity)


def test_query_flags_replace_only_what_they_name(shard_index: IndexData):
    config = query_config(shard_index.model, "ViT-B-32", None, "/tokenizers/gemma")
    assert config == {**shard_index.model.config, "name": "ViT-B-32", "tokenizer": "/tokenizers/gemma"}
    assert query_config(shard_index.model, None, None, None) == shard_index.model.config


def test_index_from_before_model_lock_rebuilds_the_same_model(tiny, shard_index: IndexData):
    """Index files store the model config they were built with: the flat lock_* keys of older versions."""
    lock = {"image": False, "image_unlocked_groups": 0, "text": False, "text_freeze_layer_norm": True}
    legacy = {f"lock_{key}": value for key, value in lock.items()} | {"channels_last": False}
    older = dataclasses.replace(shard_index.model, config=shard_index.model.config | legacy)
    assert query_config(older, None, None, None) == shard_index.model.config | {"lock": lock}
    assert build_query_model(older).model.state_dict().keys() == tiny[0].model.state_dict().keys()


def test_undecodable_query_image_names_the_file(tmp_path: Path):
    bad = tmp_path / "query.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(UserError, match="cannot decode query image .*query.jpg"):
        load_query_image(bad)
    with pytest.raises(MissingInputError, match="nothere.jpg"):
        load_query_image(tmp_path / "nothere.jpg")


def _decoded_uris(page: str) -> list[Image.Image]:
    chunks = page.split(DATA_URI)[1:]
    return [Image.open(io.BytesIO(base64.b64decode(chunk.split('"', 1)[0]))) for chunk in chunks]


def test_html_page_has_one_thumbnail_per_hit(shard_index: IndexData, tmp_path: Path):
    hits = search(shard_index, shard_index.embeddings[3].float(), 6)
    page = render_page('"query" <b>', hits)
    thumbnails = _decoded_uris(page)
    assert len(thumbnails) == 6
    assert all(t.format == "JPEG" and max(t.size) <= 192 for t in thumbnails)
    assert "&quot;query&quot; &lt;b&gt;" in page and "<b>#6</b>" in page
    assert all(h.record.caption in page for h in hits)
    path = write_page(tmp_path / "out.html", page)
    assert path.read_text(encoding="utf-8") == page
    write_page(path, render_page("again", hits[:2]))  # its own page may be replaced
    assert len(_decoded_uris(path.read_text(encoding="utf-8"))) == 2


def test_html_page_survives_a_missing_image_and_spares_user_files(tmp_path: Path):
    moved = ProductHit(1, 0.5, 0, ImageRecord("k", "p", None, "gone", str(tmp_path / "moved.tar")))
    page = render_page("q", [moved], query_image=None)
    assert DATA_URI not in page and "image unavailable" in page
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    with pytest.raises(ConfigError, match="not a page written by fashion-clip search"):
        write_page(mine, page)
    assert mine.read_text() == "<html>my notes</html>"
