"""Caption augmentation without a language model: protected words survive, steps do only what they say,
seeds replay, the vocabulary file is checked, and the offline tool writes new shards training reads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from helpers.raw_catalogue import metadata, read_split, shard_bytes
from helpers.shard_samples import jpeg_bytes, shard_sample, write_split
from hydra.utils import instantiate

from fashion_clip.data.caption_augment import CaptionAugment, load_caption_vocabulary, split_sentences, word
from fashion_clip.data.datamodule import WebDatasetDataModule, datamodule_config
from fashion_clip.data.manifest import read_manifest, sha256_file
from fashion_clip.demo.presets import HARD, HARD_PRODUCTS
from fashion_clip.demo.products import plan_products
from fashion_clip.errors import ConfigError
from fashion_clip.ingest.augment_captions import main

VOCABULARY = load_caption_vocabulary()
SEEDS = range(8)
LONG = "Black cotton trousers in navy. Relaxed fit, zip closure. Machine wash cold. Made in Italy."


@pytest.fixture(scope="module")
def hard_products() -> list:
    """The hard demo catalogue's train products (captions and attributes, no images rendered)."""
    return plan_products(HARD_PRODUCTS, seed=0, difficulty=HARD)["train"]


def _words(caption: str) -> list[str]:
    """The caption's words in order, each as its synonym group's first word."""
    return [VOCABULARY.canonical(word(t)) for t in caption.split()]


def _protected(caption: str) -> set[str]:
    """Colour, pattern, material and garment words of a caption, synonyms folded."""
    protected = VOCABULARY.attributes | {VOCABULARY.canonical(w) for w in VOCABULARY.categories}
    return set(_words(caption)) & protected


def _attribute_count(caption: str) -> int:
    """Colour, pattern and material words in a caption."""
    return sum(w in VOCABULARY.attributes for w in _words(caption))


@pytest.mark.parametrize("settings", [(1.0, 1.0, 1.0, 1.0), (0.3, 0.3, 0.3, 0.5)])
def test_no_new_protected_word_and_the_category_always_kept(hard_products, settings) -> None:
    augment = CaptionAugment(*settings)
    changed = 0
    for product in hard_products:
        for caption in product.captions:
            for seed in SEEDS:
                out = augment(caption, random.Random(seed))
                assert out.strip()
                assert _protected(out) <= _protected(caption), (caption, out)
                assert VOCABULARY.canonical(product.category) in _words(out), (caption, out)
                changed += out != caption
    assert changed > len(hard_products)  # it does rewrite captions


def test_attribute_dropout_removes_one_attribute_phrase_only(hard_products) -> None:
    augment = CaptionAugment(attribute_dropout=1.0)
    for product in hard_products[:200]:
        for caption in product.captions:
            out = augment(caption, random.Random(0))
            assert _attribute_count(out) < _attribute_count(caption) or _attribute_count(caption) == 0
            assert len(out.split()) >= len(caption.split()) - 5  # a phrase, not a sentence's worth
    assert augment("Jacket in green with a floral pattern.", random.Random(3)) in {
        "Jacket with a floral pattern.",
        "Jacket in green.",
    }
    assert augment("Cotton shorts.", random.Random(0)) == "Shorts."
    assert augment("Dress: red. Made in Italy.", random.Random(0)) == "Dress: red. Made in Italy."
    assert augment("Red dress. Shell: 100% silk.", random.Random(1)) in {
        "Dress. Shell: 100% silk.",
        "Red dress.",
    }


def test_synonym_swaps_stay_within_their_group() -> None:
    augment = CaptionAugment(synonym_swap=1.0)
    for seed in SEEDS:
        out = augment(LONG, random.Random(seed))
        pairs = list(zip(LONG.split(), out.split(), strict=True))
        for before, after in pairs:
            if word(before) in VOCABULARY.synonyms:
                assert word(after) != word(before)
                assert word(after) in VOCABULARY.synonyms[word(before)]
            else:
                assert after == before
    assert augment("T-shirt, relaxed fit.", random.Random(0)) == "Tee, loose fit."


def test_sentence_steps_reorder_or_drop_a_sentence_without_a_garment() -> None:
    sentences = [" ".join(s) for s in split_sentences(LONG)]
    for seed in SEEDS:
        shuffled = CaptionAugment(sentence_shuffle=1.0)(LONG, random.Random(seed))
        assert sorted(" ".join(s) for s in split_sentences(shuffled)) == sorted(sentences)
        dropped = [
            " ".join(s)
            for s in split_sentences(CaptionAugment(sentence_dropout=1.0)(LONG, random.Random(seed)))
        ]
        missing = [s for s in sentences if s not in dropped]
        assert len(dropped) == len(sentences) - 1 and len(missing) == 1
        assert "trousers" not in missing[0].lower()
    assert (
        CaptionAugment(sentence_dropout=1.0)("Red wool coat, long.", random.Random(0))
        == "Red wool coat, long."
    )


def test_same_seed_same_caption_and_seeds_differ() -> None:
    augment = CaptionAugment(0.5, 0.5, 0.5, 0.5)
    outputs = [augment(LONG, random.Random(seed)) for seed in SEEDS]
    assert outputs == [augment(LONG, random.Random(seed)) for seed in SEEDS]
    assert len(set(outputs)) > 3


@pytest.mark.parametrize("caption", ["", "   ", "Dress", "Red", "red."])
def test_empty_and_one_word_captions_pass_through(caption: str) -> None:
    out = CaptionAugment(1.0, 1.0, 1.0, 1.0)(caption, random.Random(0))
    assert out == caption


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("synonyms: [[red, crimson]]", "'red' is in colours"),
        ("synonyms: [[wool, cashmere]]", "'wool' is in materials"),
        ("synonyms: [[jacket, outerwear]]", "garment word 'jacket'"),
        ("synonyms: [[pants, slacks]]", "'pants' is in two synonym groups"),
        ("colours: [jacket]", "'jacket' is listed as both colours and categories"),
        ("synonyms: [[zip]]", "at least two different words"),
    ],
)
def test_vocabulary_file_that_would_rewrite_an_attribute_is_refused(tmp_path, text: str, named: str) -> None:
    path = tmp_path / "vocabulary.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named) as error:
        load_caption_vocabulary(path)
    assert str(path) in str(error.value)


def test_probability_outside_unit_interval_is_refused() -> None:
    with pytest.raises(ConfigError, match="data.caption_augment.synonym_swap=1.5"):
        CaptionAugment(synonym_swap=1.5)


def _catalogue(directory: Path) -> Path:
    """Sixteen samples with long captions in shards of five, plus one without a caption."""
    samples = [
        shard_sample(i, jpeg_bytes((10 * i, 0, 0)), f"p{i}", "trousers", [LONG, "Cotton trousers in navy."])
        for i in range(16)
    ]
    samples.insert(7, shard_sample(16, jpeg_bytes((0, 0, 9)), "p16", captions=[" "]))
    return write_split(directory, samples, shard_size=5)


def _hashes(directory: Path) -> dict[str, str]:
    """Every file of a directory by name, as sha256."""
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir())}


def _augment(source: Path, out: Path, seed: int = 0) -> int:
    return main(
        [
            "--source",
            str(source),
            "--out",
            str(out),
            "--per-caption",
            "2",
            "--seed",
            str(seed),
            "--no-progress",
        ]
    )


def test_offline_tool_adds_captions_to_new_shards_and_leaves_the_source(tmp_path) -> None:
    source = _catalogue(tmp_path / "src")
    before = _hashes(source)
    assert _augment(source, tmp_path / "aug") == 0
    assert _hashes(source) == before
    manifest = read_manifest(tmp_path / "aug")
    assert manifest.num_samples == 16 and len(manifest.skipped) == 1
    assert [s.name for s in manifest.shards] == [s.name for s in read_manifest(source).shards]
    originals, augmented = read_split(source), read_split(tmp_path / "aug")
    for key, sample in augmented.items():
        captions = json.loads(sample["json"])["captions"]
        assert captions[:2] == [LONG, "Cotton trousers in navy."]
        assert 2 < len(captions) <= 6 and len(set(captions)) == len(captions)
        assert all(_protected(c) <= _protected(LONG) and "trousers" in _words(c) for c in captions)
        assert sample["jpg"] == originals[key]["jpg"] and sample["txt"] == originals[key]["txt"]
    _augment(source, tmp_path / "again")
    assert shard_bytes(tmp_path / "again") == shard_bytes(tmp_path / "aug")
    _augment(source, tmp_path / "other", seed=1)
    assert metadata(tmp_path / "other") != metadata(tmp_path / "aug")


def test_offline_tool_refuses_an_existing_out(tmp_path, capsys) -> None:
    source = _catalogue(tmp_path / "src")
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit) as exit_:
        _augment(source, tmp_path / "taken")
    assert exit_.value.code == 2
    assert "already exists" in capsys.readouterr().err
    assert not any((tmp_path / "taken").iterdir())


def _module(tiny_clip, split: Path, **kwargs) -> WebDatasetDataModule:
    return WebDatasetDataModule(
        train=str(split),
        val=str(split),
        train_transform=tiny_clip.train_transform,
        val_transform=tiny_clip.val_transform,
        tokenizer=tiny_clip.tokenizer,
        num_workers=0,
        batch_size=15,
        eval_batch_size=16,
        **kwargs,
    )


def test_training_picks_among_the_offline_captions(tmp_path, tiny_clip) -> None:
    source = _catalogue(tmp_path / "src")
    _augment(source, tmp_path / "aug")
    offline = {c for meta in metadata(tmp_path / "aug") for c in meta["captions"]}
    seen = set(next(iter(_module(tiny_clip, tmp_path / "aug").train_dataloader()))["caption"])
    assert seen <= offline and seen - {LONG, "Cotton trousers in navy."}


def test_training_captions_augmented_and_replayed_validation_never(tmp_path, tiny_clip) -> None:
    split = _catalogue(tmp_path / "src")
    augment = CaptionAugment(0.3, 0.3, 0.3, 0.5)

    def first_batch(seed: int) -> list[str]:
        module = _module(tiny_clip, split, caption_augment=augment, seed=seed)
        return next(iter(module.train_dataloader()))["caption"]

    captions = first_batch(0)
    assert set(captions) - {LONG, "Cotton trousers in navy."}
    assert captions == first_batch(0) and captions != first_batch(1)
    val = next(iter(_module(tiny_clip, split, caption_augment=augment).val_dataloader()))["caption"]
    assert val == [LONG] * 16


def test_study_arms_compose(compose_train) -> None:
    augmented = compose_train("experiment=caption_augment_study", "caption_augment=default")
    assert isinstance(instantiate(datamodule_config(augmented.data)).caption_augment, CaptionAugment)
    tuned = compose_train(
        "experiment=demo_hard", "+caption_augment=default", "data.caption_augment.synonym_swap=0.2"
    )
    assert instantiate(tuned.data.caption_augment).probabilities["synonym_swap"] == 0.2
    assert compose_train("experiment=caption_augment_study").data.caption_augment is None
    assert compose_train("experiment=demo_hard").data.caption_augment is None
