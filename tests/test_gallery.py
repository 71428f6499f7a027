"""The failure gallery: ranks and top products against brute force, a self-contained page with the
base model's results beside, bad sizes, and the evaluate / train options end to end."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers.tiny_model import save_tiny_weights
from helpers.train_overrides import TINY_ON_CPU
from omegaconf import OmegaConf
from PIL import Image

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.front_door import SplitScoring, split_scoring, write_run_outputs
from fashion_clip.evaluation.run import evaluate
from fashion_clip.evaluation.wise import wise
from fashion_clip.records import BASE, FINETUNED, read_results
from fashion_clip.reports.pages import (
    IMAGE,
    TEXT,
    check_gallery_size,
    directions,
    find_failures,
    product_ranks,
    write_gallery,
)
from fashion_clip.retrieval.embedding import CaptionRecord, EmbeddedSplit, ImageRecord
from fashion_clip.training import train

CATEGORIES = ["dress", "shoes"]
GALLERY = ("evaluation.gallery=true",)


def gallery_split(
    root: Path | None = None, products: int = 8, seed: int = 0, reverse: bool = False
) -> EmbeddedSplit:
    """2 images and 1-2 captions per product, random unit features; images are small PNGs under `root`."""
    g = torch.Generator().manual_seed(seed)
    images = []
    for p in range(products):
        for i in range(2):
            source = str(root / f"p{p}-{i}.png") if root else "missing.png"
            if root:
                Image.new("RGB", (40, 30), (30 * p % 255, 60 * i, 90)).save(source)
            images.append(ImageRecord(f"p{p}-{i}", f"p{p}", CATEGORIES[p % 2], f"caption {p}", source))
    captions = [
        CaptionRecord(f"p{p}", f"caption {p} v{j}") for p in range(products) for j in range(1 + p % 2)
    ]
    if reverse:  # another model's embedding may list the same queries in another order
        images, captions = images[::-1], captions[::-1]
    return EmbeddedSplit(
        F.normalize(torch.randn(len(images), 8, generator=g), dim=-1),
        images,
        F.normalize(torch.randn(len(captions), 8, generator=g), dim=-1),
        captions,
    )


def brute_force_products(
    query: torch.Tensor, features: torch.Tensor, products: list[str]
) -> dict[str, float]:
    """Each product's best item score for one query (Python loop)."""
    best: dict[str, float] = {}
    for row, product in enumerate(products):
        best[product] = max(best.get(product, -2.0), float(features[row] @ query))
    return best


def test_ranks_and_top_products_match_brute_force() -> None:
    split = gallery_split()
    for name, direction in directions(split).items():
        ranks, scores = product_ranks(direction, chunk_size=3)
        gallery = split.image_features if name == TEXT else split.caption_features
        gallery_products = [r.product_id for r in (split.images if name == TEXT else split.captions)]
        for row, query in enumerate(direction.queries):
            best = brute_force_products(direction.query_features[row], gallery, gallery_products)
            truth = best[query.product_id]
            assert int(ranks[row]) == sum(score >= truth for score in best.values())
            assert float(scores[row]) == pytest.approx(truth, abs=1e-6)
    failures = find_failures(split, 3)
    for name, group in failures.items():
        direction = directions(split)[name]
        ranks, scores = product_ranks(direction)
        shown = [int(ranks[direction.queries.index(f.query)]) for f in group]
        assert shown == sorted(ranks.tolist(), reverse=True)[:3] and [f.truth.rank for f in group] == shown
        gallery = split.image_features if name == TEXT else split.caption_features
        gallery_products = [r.product_id for r in (split.images if name == TEXT else split.captions)]
        for failure in group:
            row = direction.queries.index(failure.query)
            best = brute_force_products(direction.query_features[row], gallery, gallery_products)
            top5 = sorted(best, key=lambda p: -best[p])[:5]
            assert [h.record.product_id for h in failure.hits] == top5
            assert [h.score for h in failure.hits] == pytest.approx([best[p] for p in top5], abs=1e-6)
            assert failure.truth.record.product_id == failure.query.product_id
            assert failure.truth.score == pytest.approx(best[failure.query.product_id], abs=1e-6)
            assert failure.base_hits is None


def test_base_hits_are_the_base_models_top_products_for_the_same_query() -> None:
    split, base = gallery_split(seed=0), gallery_split(seed=1, reverse=True)
    failures = find_failures(split, 2, base)
    base_directions = directions(base)
    for name, group in failures.items():
        for failure in group:
            row = next(i for i, q in enumerate(base_directions[name].queries) if q.key == failure.query.key)
            query = base_directions[name].query_features[row]
            gallery, records = (
                (base.image_features, base.images) if name == TEXT else (base.caption_features, base.captions)
            )
            best = brute_force_products(query, gallery, [r.product_id for r in records])
            assert [h.record.product_id for h in failure.base_hits] == sorted(best, key=lambda p: -best[p])[
                :5
            ]
    # an image query's results show the retrieved caption on its product's image
    hit = failures[IMAGE][0].hits[0]
    assert hit.record.caption.startswith(f"caption {hit.record.product_id[1:]} v")


def test_page_is_self_contained_with_top5_and_the_base_beside(tmp_path: Path) -> None:
    split, base = gallery_split(tmp_path), gallery_split(tmp_path, seed=1)
    path = write_gallery(split, tmp_path / "gallery.html", 2, "tiny <on> demo", "finetuned", base)
    page = path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script" not in page
    tags = re.findall(r"<img [^>]*>", page)
    # per text query: truth + 5 + 5 base; per image query: the query image too
    assert len(tags) == 2 * 11 + 2 * 12
    assert all('src="data:image/jpeg;base64,' in tag for tag in tags)
    assert page.count("finetuned: top 5") == 4 and page.count("base: top 5") == 4
    assert "same category" in page and "other category" in page
    assert "tiny &lt;on&gt; demo" in page and "true product" in page
    single = write_gallery(split, tmp_path / "single.html", 1, "t", "base").read_text(encoding="utf-8")
    assert "base: top 5" in single and len(re.findall(r"<img ", single)) == 6 + 7


def test_gallery_never_replaces_a_file_it_did_not_write(tmp_path: Path) -> None:
    notes = tmp_path / "gallery.html"
    notes.write_text("<html>notes</html>")
    with pytest.raises(ConfigError, match="gallery '.*gallery.html' already exists"):
        write_gallery(gallery_split(), notes, 1, "t", "base")
    assert notes.read_text() == "<html>notes</html>"


@pytest.mark.parametrize("size", [0, -1, "ten", True])
def test_gallery_size_must_be_positive_and_the_message_names_the_key(size) -> None:
    with pytest.raises(ConfigError, match="evaluation.gallery_size must be a positive number"):
        check_gallery_size(size, "evaluation.gallery_size")


def test_bad_gallery_options_stop_evaluate_and_train_before_work(
    compose_train, small_catalogue: Path
) -> None:
    evaluate_cfg = partial(compose_train, config_name="evaluate", data_dir=small_catalogue)
    with pytest.raises(
        ConfigError, match="gallery_size must be a positive number of queries per kind, got 0"
    ):
        evaluate(evaluate_cfg("evaluation.gallery=true", "evaluation.gallery_size=0"))
    with pytest.raises(ConfigError, match="evaluation.gallery_base=true .* set ckpt_path"):
        evaluate(evaluate_cfg("evaluation.gallery=true", "evaluation.gallery_base=true"))
    cfg = compose_train("evaluation.gallery=true", "evaluation.gallery_size=0")
    with pytest.raises(ConfigError, match="evaluation.gallery_size must be a positive number"):
        split_scoring(cfg, "train")
    assert split_scoring(compose_train(), "train").gallery is None


@pytest.mark.parametrize(
    ("config_name", "overrides", "message"),
    [
        (
            "train",
            ["evaluation.gallery_base=true"],
            r"gallery_base=true adds .* set evaluation\.gallery=true",
        ),
        (
            "train",
            [*GALLERY, "evaluation.gallery_base=true", "test_before_fit=false"],
            r"from the evaluation before fitting.* set test_before_fit=true and test_after_fit=true",
        ),
        (
            "train",
            [*GALLERY, "evaluation.gallery_base=true", "test_after_fit=false"],
            r"beside the fine-tuned model's: set test_before_fit=true and test_after_fit=true",
        ),
        ("train", [*GALLERY, "test_before_fit=false", "test_after_fit=false"], r"score none: set test_after"),
        (
            "train",
            ["+export_fashionklip=true"],
            r"export_fashionklip=true is an option of .*evaluate, not train",
        ),
        ("wise", [*GALLERY, "ckpt_path=x.pt"], r"wise scores several weight mixes and writes no gallery"),
        ("wise", ["+export_fashionklip=true", "ckpt_path=x.pt"], r"evaluate, not wise"),
    ],
)
def test_options_a_command_cannot_honour_stop_it_before_work(
    compose_train, config_name: str, overrides: list[str], message: str
) -> None:
    cfg = compose_train(*overrides, config_name=config_name)
    with pytest.raises(ConfigError, match=message):
        {"train": train, "wise": wise}[config_name](cfg)
    assert not Path(cfg.paths.output_dir).exists()


@pytest.mark.parametrize("with_base", [True, False])
def test_the_gallery_shows_the_base_model_beside_only_when_asked(tmp_path: Path, with_base: bool) -> None:
    """One writer for every command: the fine-tuned split is shown, the base split beside it on request."""
    cfg = OmegaConf.create(
        {
            "model": {"name": "tiny"},
            "data": {"name": "demo"},
            "evaluation": {"split": "test"},
            "paths": {"output_dir": str(tmp_path)},
        }
    )
    scoring = SplitScoring(
        "test", cfg.data, torch.device("cpu"), {}, 16, 0, gallery=1, gallery_base=with_base
    )
    splits = {BASE: gallery_split(tmp_path, seed=1), FINETUNED: gallery_split(tmp_path)}
    write_run_outputs(cfg, scoring, [], splits)
    page = (tmp_path / "gallery.html").read_text(encoding="utf-8")
    assert page.count("finetuned: top 5") == 2 and page.count("base: top 5") == (2 if with_base else 0)
    assert not (tmp_path / "evaluation_results.json").exists()  # no records, no results file


def test_evaluate_writes_attributes_breakdowns_and_gallery(
    small_catalogue: Path, compose_train, tmp_path
) -> None:
    ckpt = save_tiny_weights(tmp_path / "weights.pt", seed=3)
    cfg = compose_train(
        "protocol=[full,attributes]",
        f"ckpt_path={ckpt}",
        "evaluation.gallery=true",
        "evaluation.gallery_size=2",
        "evaluation.gallery_base=true",
        "evaluation.num_workers=0",
        config_name="evaluate",
        data_dir=small_catalogue,
    )
    records = evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    attributes = next(r for r in read_results(out / "evaluation_results.json") if r.protocol == "attributes")
    for field in ("category", "colour", "pattern", "material"):  # the demo json's fields
        assert (
            0.0 <= attributes.metrics[f"{field}/ndcg10"] <= 1.0
            and attributes.metrics[f"{field}/queries"] >= 2
        )
    assert attributes.metrics == records[1].metrics
    assert {p.name for p in out.glob("categories_*")} == {
        "categories_full.md",
        "categories_full.png",
        "categories_attributes.md",
        "categories_attributes.png",
    }
    page = (out / "gallery.html").read_text(encoding="utf-8")
    assert page.count("finetuned: top 5") == 4 and page.count("base: top 5") == 4
    assert "https://" not in page and page.count('src="data:image/jpeg;base64,') == 2 * 11 + 2 * 12


def test_training_writes_the_gallery_with_the_base_model_beside(
    compose_train, small_catalogue, tmp_path
) -> None:
    cfg = compose_train(
        *TINY_ON_CPU,
        "trainer.fast_dev_run=1",
        "protocol=[full]",
        "evaluation.gallery=true",
        "evaluation.gallery_size=1",
        "evaluation.gallery_base=true",
        data_dir=small_catalogue,
    )
    train(cfg)
    run = tmp_path / "run"
    page = (run / "gallery.html").read_text(encoding="utf-8")
    assert page.count("finetuned: top 5") == 2 and page.count("base: top 5") == 2
    table = (run / "categories_full.md").read_text()
    assert "mean_recall (base)" in table and "change" in table
