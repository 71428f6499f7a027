"""Concept extraction on hand-written captions whose concepts, hypernyms and examples are known."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion_clip.data.vocabulary import load_vocabulary, shipped_vocabulary
from fashion_clip.errors import MissingInputError
from fashion_clip.knowledge.concepts import (
    ancestors,
    candidate_phrases,
    extract_concepts,
    hypernym,
    summary_rows,
)

HEADS = frozenset({"sunglasses", "jacket", "leather", "t-shirt"})


def test_candidates_end_in_a_head_noun_and_stop_at_clauses_and_stopwords() -> None:
    caption = "Woman sunglasses, black leather jacket with a zip. Cotton t-shirt"
    assert candidate_phrases(caption, HEADS) == {
        "sunglasses",
        "woman sunglasses",
        "leather",
        "black leather",
        "jacket",
        "leather jacket",
        "black leather jacket",
        "t-shirt",
        "cotton t-shirt",
    }
    assert candidate_phrases(caption, HEADS, max_words=1) == {"sunglasses", "leather", "jacket", "t-shirt"}
    assert candidate_phrases("a jacket with sunglasses", HEADS) == {"jacket", "sunglasses"}


def test_hypernym_drops_the_first_word_down_to_the_head_noun() -> None:
    assert hypernym("woman sunglasses") == "sunglasses"
    assert hypernym("sunglasses") is None
    assert ancestors("black leather jacket") == ["leather jacket", "jacket"]


def test_extract_counts_samples_keeps_frequent_phrases_and_their_examples() -> None:
    samples = [
        ("a", ["Woman sunglasses", "woman sunglasses in black"]),  # one sample: counts once
        ("b", ["woman sunglasses"]),
        ("c", ["round sunglasses"]),
        ("d", ["leather jacket"]),
    ]
    concepts = extract_concepts(samples, HEADS, min_count=2, images_per_concept=2)
    assert [(c.query_id, c.phrase, c.father) for c in concepts] == [
        (0, "sunglasses", None),
        (1, "woman sunglasses", "sunglasses"),
    ]
    assert concepts[0].image_keys == ("a", "b")  # first K in reading order, "c" left out
    assert concepts[1].image_keys == ("a", "b")
    assert concepts[1].prompt == "a photo of woman sunglasses"
    assert concepts[1].depth == 1


def test_every_kept_concept_has_its_father_kept() -> None:
    captions = ["black leather jacket", "red leather jacket", "black leather jacket", "leather t-shirt"]
    concepts = extract_concepts([(str(i), [c]) for i, c in enumerate(captions)], HEADS, min_count=2)
    phrases = {c.phrase for c in concepts}
    assert phrases == {"jacket", "leather", "leather jacket", "black leather", "black leather jacket"}
    assert all(c.father is None or c.father in phrases for c in concepts)


def test_summary_reports_size_depth_and_images_per_concept() -> None:
    concepts = extract_concepts([("a", ["black leather jacket"]), ("b", ["jacket"])], HEADS, min_count=1)
    rows = dict(summary_rows(concepts))
    assert rows["concepts"] == "5"
    assert rows["roots (head nouns)"] == "2"
    assert rows["hierarchy levels"] == "3"
    assert rows["images per concept (min / median / max)"] == "1 / 1 / 2"
    assert summary_rows([]) == [("concepts", "0")]


def test_vocabulary_ships_fashion_nouns_and_takes_user_words(tmp_path: Path) -> None:
    shipped = shipped_vocabulary()
    assert {"jacket", "sunglasses", "leather", "t-shirt"} <= shipped
    assert not any(word.startswith("#") for word in shipped)
    extra = tmp_path / "extra.txt"
    extra.write_text("# my catalogue\nKurta\n\nsherwani  # formal\n", encoding="utf-8")
    assert load_vocabulary(extra) == shipped | {"kurta", "sherwani"}
    with pytest.raises(MissingInputError, match="missing.txt"):
        load_vocabulary(tmp_path / "missing.txt")
