"""The hard demo catalogue: more views, near-duplicate products, long captions, some shared by products."""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import pytest

from fashion_clip.data.manifest import read_manifest
from fashion_clip.demo.captions import COMPOSITIONS, sentence_count
from fashion_clip.demo.catalogue import catalogue_is_complete, generate_demo_catalogue
from fashion_clip.demo.cli import main
from fashion_clip.demo.presets import HARD, HARD_PRODUCTS, SPLITS
from fashion_clip.demo.products import plan_products

SMALL = {"train": 20, "val": 12, "test": 12}
SIZE = 32
SHARD_SIZE = 40
ATTRIBUTES = ("category", "colour", "pattern", "material")
REQUIRED_KEYS = {"product_id", "captions", *ATTRIBUTES}

Sample = dict[str, bytes]


def _read_split(split_dir: Path) -> list[Sample]:
    """All samples of a split as {ext: bytes}, read straight from the tars listed in the manifest."""
    samples: dict[str, Sample] = defaultdict(dict)
    for shard in read_manifest(split_dir).shards:
        with tarfile.open(split_dir / shard.name) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples[key][ext] = tar.extractfile(member).read()
    return list(samples.values())


def _products(samples: list[Sample]) -> dict[str, dict]:
    """Product id -> its metadata, as every view of the product carries it."""
    return {meta["product_id"]: meta for meta in (json.loads(s["json"]) for s in samples)}


def _differing(a: dict, b: dict) -> list[str]:
    """The attributes two products differ in."""
    return [field for field in ATTRIBUTES if a[field] != b[field]]


def _near_duplicates(a: dict, b: dict) -> bool:
    """Same category and colour, and exactly one of pattern and material differs."""
    return _differing(a, b) in (["pattern"], ["material"])


def _near_duplicate_share(products: list[dict]) -> float:
    """Share of products that have a near-duplicate in the same split."""
    paired = {p["product_id"] for a, b in combinations(products, 2) if _near_duplicates(a, b) for p in (a, b)}
    return len(paired) / len(products)


def _caption_groups(products: list[dict]) -> list[list[dict]]:
    """Groups of two or more products whose caption lists are identical."""
    groups: dict[tuple[str, ...], list[dict]] = defaultdict(list)
    for meta in products:
        groups[tuple(meta["captions"])].append(meta)
    return [group for group in groups.values() if len(group) > 1]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo_hard")
    generate_demo_catalogue(out, SMALL, image_size=SIZE, shard_size=SHARD_SIZE, difficulty=HARD)
    return out


@pytest.fixture(scope="module")
def samples(catalogue: Path) -> dict[str, list[Sample]]:
    return {split: _read_split(catalogue / split) for split in SPLITS}


def test_every_product_has_four_to_six_distinct_views(samples: dict) -> None:
    for split in SPLITS:
        views = defaultdict(list)
        for sample in samples[split]:
            views[json.loads(sample["json"])["product_id"]].append(sample)
        assert len(views) == SMALL[split]
        for group in views.values():
            assert 4 <= len(group) <= 6
            assert len({s["jpg"] for s in group}) == len(group)
            assert len({s["json"] for s in group}) == 1


def test_metadata_keeps_the_default_keys(samples: dict) -> None:
    for split in SPLITS:
        for sample in samples[split]:
            meta = json.loads(sample["json"])
            assert REQUIRED_KEYS <= set(meta)
            assert sample["txt"].decode() == meta["captions"][0]


def test_splits_are_product_disjoint(samples: dict) -> None:
    ids = [set(_products(samples[split])) for split in SPLITS]
    assert sum(map(len, ids)) == len(set.union(*ids)) == sum(SMALL.values())


def test_near_duplicates_differ_in_exactly_one_attribute(samples: dict) -> None:
    kinds = set()
    for split in SPLITS:
        products = list(_products(samples[split]).values())
        assert all(_differing(a, b) for a, b in combinations(products, 2))
        assert _near_duplicate_share(products) >= 0.4
        kinds |= {tuple(_differing(a, b)) for a, b in combinations(products, 2) if _near_duplicates(a, b)}
    assert kinds == {("pattern",), ("material",)}


def test_hard_preset_plan_has_the_advertised_shares() -> None:
    test_split = plan_products(HARD_PRODUCTS, seed=0, difficulty=HARD)["test"]
    products = [p.metadata() for p in test_split]
    assert 0.4 <= _near_duplicate_share(products) <= 0.6
    identical = sum(len(group) for group in _caption_groups(products))
    assert 0.1 <= identical / len(products) <= 0.2


def test_compositions_name_their_material() -> None:
    assert all(material in text.lower() for material, texts in COMPOSITIONS.items() for text in texts)


def test_long_captions_have_two_to_four_sentences_and_a_matching_composition(samples: dict) -> None:
    for split in SPLITS:
        products = _products(samples[split]).values()
        shared = {meta["product_id"] for group in _caption_groups(list(products)) for meta in group}
        for meta in products:
            caption, paraphrase = meta["captions"]
            assert caption != paraphrase
            assert 2 <= sentence_count(caption) <= 4
            if meta["material"] in caption.split(". ")[0].lower():
                assert any(text in caption for text in COMPOSITIONS[meta["material"]]), caption
            else:
                # only an identical-caption group leaves the material, and so its composition, unsaid
                assert meta["product_id"] in shared and meta["material"] not in caption.lower(), caption


def test_identical_captions_belong_to_distinct_near_duplicates(samples: dict) -> None:
    for split in ("val", "test"):
        groups = _caption_groups(list(_products(samples[split]).values()))
        assert groups
        for group in groups:
            assert len({meta["product_id"] for meta in group}) == len(group)
            varied = {attr for a, b in combinations(group, 2) for attr in _differing(a, b)}
            assert len(varied) == 1 and all(len(_differing(a, b)) == 1 for a, b in combinations(group, 2))
            (attribute,) = varied
            for caption in group[0]["captions"]:
                assert not any(meta[attribute] in caption.lower() for meta in group), caption
        texts = defaultdict(set)
        for sample in samples[split]:
            texts[sample["txt"]].add(json.loads(sample["json"])["product_id"])
        assert any(len(ids) > 1 for ids in texts.values())


def test_same_arguments_give_byte_identical_shards(tmp_path: Path, catalogue: Path) -> None:
    again = generate_demo_catalogue(tmp_path, SMALL, image_size=SIZE, shard_size=SHARD_SIZE, difficulty=HARD)
    for split in SPLITS:
        assert again[split] == read_manifest(catalogue / split)
        for shard in again[split].shards:
            assert (tmp_path / split / shard.name).read_bytes() == (
                catalogue / split / shard.name
            ).read_bytes()


def test_hard_and_default_catalogues_are_never_mistaken(catalogue: Path, tmp_path: Path) -> None:
    params = dict(products=SMALL, image_size=SIZE, seed=0, shard_size=SHARD_SIZE)
    assert catalogue_is_complete(catalogue, **params, difficulty=HARD)
    assert not catalogue_is_complete(catalogue, **params)
    assert not catalogue_is_complete(catalogue)
    assert json.loads((catalogue / "catalogue.json").read_text())["difficulty"] == HARD.as_json()

    default = tmp_path / "default"
    generate_demo_catalogue(default, **params)
    assert catalogue_is_complete(default, **params)
    assert not catalogue_is_complete(default, **params, difficulty=HARD)
    stamp = json.loads((default / "catalogue.json").read_text())
    assert stamp == {"version": 1, "products": SMALL, "image_size": SIZE, "seed": 0, "shard_size": SHARD_SIZE}


def test_cli_hard_flag_regenerates_over_a_default_catalogue(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--out", str(tmp_path), "--products", "4", "2", "2", "--image-size", "32"]
    assert main(argv) == 0
    assert main([*argv, "--hard"]) == 0
    assert "written" in capsys.readouterr().out
    assert main([*argv, "--hard"]) == 0
    assert "already complete" in capsys.readouterr().out
    views = defaultdict(int)
    for sample in _read_split(tmp_path / "train"):
        views[json.loads(sample["json"])["product_id"]] += 1
    assert len(views) == 4 and all(4 <= n <= 6 for n in views.values())
    assert main(argv) == 0
    assert "written" in capsys.readouterr().out
