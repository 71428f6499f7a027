"""The demo catalogue must be deterministic, product-split, well captioned and learnable-looking."""

from __future__ import annotations

import io
import json
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from fashion_clip.data.manifest import read_manifest, sha256_file
from fashion_clip.demo.captions import NOTES
from fashion_clip.demo.catalogue import catalogue_is_complete, generate_demo_catalogue
from fashion_clip.demo.cli import main
from fashion_clip.demo.fabrics import COLOURS, GARMENT_MATERIALS, MATERIALS, PATTERNS
from fashion_clip.demo.presets import DEFAULT_PRODUCTS
from fashion_clip.demo.products import plan_products
from fashion_clip.demo.rendering import render_views
from fashion_clip.demo.shapes import SILHOUETTES

SMALL = {"train": 30, "val": 8, "test": 8}
SIZE = 64
SPLITS = ("train", "val", "test")


def _read_split(split_dir: Path) -> dict[str, dict[str, bytes]]:
    """All samples of a split as key -> {ext: bytes}, read straight from the tars listed in the manifest."""
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    for shard in read_manifest(split_dir).shards:
        with tarfile.open(split_dir / shard.name) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples[key][ext] = tar.extractfile(member).read()
    return dict(samples)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate_demo_catalogue(out, products=SMALL, image_size=SIZE, seed=0, shard_size=25)
    return out


@pytest.fixture(scope="module")
def samples(catalogue: Path) -> dict[str, dict[str, dict[str, bytes]]]:
    return {split: _read_split(catalogue / split) for split in SPLITS}


def _metadata(split_samples: dict[str, dict[str, bytes]]) -> list[dict]:
    return [json.loads(s["json"]) for s in split_samples.values()]


def test_vocabulary_tables_are_rich_enough() -> None:
    assert len(SILHOUETTES) >= 8
    assert len(COLOURS) >= 10
    assert len(PATTERNS) >= 4
    assert len(MATERIALS) >= 4
    assert all(m in MATERIALS for materials in GARMENT_MATERIALS.values() for m in materials)


def test_every_garment_type_has_a_silhouette_materials_and_notes_in_one_order() -> None:
    assert list(SILHOUETTES) == list(GARMENT_MATERIALS) == list(NOTES)
    assert all(silhouette.shapes for silhouette in SILHOUETTES.values())
    assert all(GARMENT_MATERIALS.values()) and all(NOTES.values())


def test_default_catalogue_covers_the_vocabulary_with_distinct_products() -> None:
    plan = plan_products(DEFAULT_PRODUCTS, seed=0)
    assert {split: len(items) for split, items in plan.items()} == dict(DEFAULT_PRODUCTS)
    products = [p for items in plan.values() for p in items]
    for split in SPLITS:
        assert {p.category for p in plan[split]} == set(SILHOUETTES)
        assert {p.colour for p in plan[split]} == set(COLOURS)
        assert {p.pattern for p in plan[split]} == set(PATTERNS)
    assert len({p.product_id for p in products}) == len(products)
    assert len({(p.category, p.colour, p.pattern, p.material) for p in products}) == len(products)
    visual = {(p.category, p.colour, p.pattern) for p in products}
    assert len(visual) >= 0.75 * len(products)


def test_plan_is_deterministic_and_seed_dependent() -> None:
    assert plan_products(SMALL, seed=3) == plan_products(SMALL, seed=3)
    assert plan_products(SMALL, seed=3) != plan_products(SMALL, seed=4)


def test_too_many_products_is_an_error() -> None:
    with pytest.raises(ValueError, match="attribute combinations"):
        plan_products({"train": 10**6})


def test_manifest_counts_match_the_tars(catalogue: Path, samples: dict) -> None:
    for split in SPLITS:
        manifest = read_manifest(catalogue / split)
        assert manifest.dataset == f"demo-{split}"
        assert manifest.num_samples == len(samples[split])
        for shard in manifest.shards:
            with tarfile.open(catalogue / split / shard.name) as tar:
                assert len(tar.getnames()) == 3 * shard.samples
            assert sha256_file(catalogue / split / shard.name) == shard.sha256
    assert len(read_manifest(catalogue / "train").shards) > 1


def test_keys_and_fields(samples: dict) -> None:
    for split in SPLITS:
        keys = list(samples[split])
        assert keys == [f"{split}_{i:06d}" for i in range(len(keys))]
        assert all(set(s) == {"jpg", "txt", "json"} for s in samples[split].values())


def test_each_product_has_two_or_three_consistent_views(samples: dict) -> None:
    for split in SPLITS:
        views = defaultdict(list)
        for sample in samples[split].values():
            views[json.loads(sample["json"])["product_id"]].append(sample)
        assert len(views) == SMALL[split]
        for group in views.values():
            assert 2 <= len(group) <= 3
            assert len({s["json"] for s in group}) == 1
            assert len({s["jpg"] for s in group}) == len(group)
            assert group[0]["txt"].decode() == json.loads(group[0]["json"])["captions"][0]


def test_splits_are_product_disjoint(samples: dict) -> None:
    ids = {split: {m["product_id"] for m in _metadata(samples[split])} for split in SPLITS}
    assert not ids["train"] & ids["val"]
    assert not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]


def test_captions_name_every_attribute(samples: dict) -> None:
    for split in SPLITS:
        for meta in _metadata(samples[split]):
            assert len(meta["captions"]) == 2 and meta["captions"][0] != meta["captions"][1]
            for caption in meta["captions"]:
                text = caption.lower()
                for field in ("colour", "pattern", "material", "category"):
                    assert meta[field] in text, (field, caption)


def test_images_decode_as_rgb_of_requested_size(samples: dict) -> None:
    for split in SPLITS:
        for sample in samples[split].values():
            image = Image.open(io.BytesIO(sample["jpg"]))
            assert image.format == "JPEG"
            assert image.mode == "RGB" and image.size == (SIZE, SIZE)


def test_garment_colour_dominates_the_image() -> None:
    products = plan_products(DEFAULT_PRODUCTS)["train"]
    product = next(p for p in products if p.colour == "red" and p.pattern == "solid")
    image = render_views(product, 96)[0]
    r, g, b = image.getpixel((48, 48))
    assert r > 140 and g < 90 and b < 90


def test_same_seed_gives_byte_identical_shards(tmp_path: Path, catalogue: Path) -> None:
    again = generate_demo_catalogue(tmp_path / "again", SMALL, image_size=SIZE, seed=0, shard_size=25)
    for split in SPLITS:
        assert again[split] == read_manifest(catalogue / split)
        for shard in again[split].shards:
            assert (tmp_path / "again" / split / shard.name).read_bytes() == (
                catalogue / split / shard.name
            ).read_bytes()
    other = generate_demo_catalogue(tmp_path / "other", SMALL, image_size=SIZE, seed=1, shard_size=25)
    assert other["train"].shards[0].sha256 != again["train"].shards[0].sha256


def test_no_temporary_files_are_left(catalogue: Path) -> None:
    assert not [p for p in catalogue.rglob("*") if p.name.endswith(".tmp")]


def test_completeness_check(catalogue: Path, tmp_path: Path) -> None:
    assert catalogue_is_complete(catalogue)
    assert catalogue_is_complete(catalogue, products=SMALL, image_size=SIZE, seed=0, shard_size=25)
    assert not catalogue_is_complete(catalogue, seed=1)
    assert not catalogue_is_complete(catalogue, products=DEFAULT_PRODUCTS)
    assert not catalogue_is_complete(tmp_path / "missing")

    out = tmp_path / "damaged"
    manifests = generate_demo_catalogue(out, products={"train": 3, "val": 2, "test": 2}, image_size=32)
    assert catalogue_is_complete(out)
    shard = out / "val" / manifests["val"].shards[0].name
    shard.write_bytes(shard.read_bytes()[:-512])
    assert not catalogue_is_complete(out)
    shard.unlink()
    assert not catalogue_is_complete(out)


def test_cli_skips_complete_catalogue_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--products", "4", "2", "2", "--image-size", "32", "--shard-size", "5"]
    assert main(argv) == 0
    written = capsys.readouterr().out
    assert "written" in written and "train" in written
    manifest = out / "train" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns

    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out
    assert manifest.stat().st_mtime_ns == stamp

    assert main([*argv, "--seed", "1"]) == 0
    assert "written" in capsys.readouterr().out

    before = sha256_file(out / "train" / "demo-train-000000.tar")
    assert main([*argv, "--seed", "1", "--force"]) == 0
    assert "written" in capsys.readouterr().out
    assert manifest.stat().st_mtime_ns != stamp
    assert sha256_file(out / "train" / "demo-train-000000.tar") == before
