"""FashionKLIP-schema knowledge-base files: round trip, damaged files, and the build command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fashion_clip.errors import MissingInputError, UserError
from fashion_clip.knowledge.build import build_knowledge_base, main
from fashion_clip.knowledge.concepts import Concept
from fashion_clip.knowledge.fashionklip_kb import (
    FATHERS,
    IMAGES,
    QUERIES,
    read_knowledge_base,
    write_knowledge_base,
)

CONCEPTS = [
    Concept(0, "jacket", None, "a photo of jacket", ("k1", "k2")),
    Concept(1, "leather jacket", "jacket", "a photo of leather jacket", ("k2",)),
    Concept(2, "black leather jacket", "leather jacket", "a photo of black leather jacket", ()),
]


def write_lines(path: Path, lines: list[object]) -> None:
    """JSONL from objects, or raw text for lines meant to be malformed."""
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


def test_round_trip_keeps_concepts_fathers_and_images(tmp_path: Path) -> None:
    paths = write_knowledge_base(CONCEPTS, tmp_path)
    assert [p.name for p in paths] == [QUERIES, FATHERS, IMAGES]
    first = json.loads((tmp_path / QUERIES).read_text().splitlines()[1])
    assert first == {"query_id": 1, "query_text": "a photo of leather jacket", "phrase": "leather jacket"}
    fathers = [json.loads(line) for line in (tmp_path / FATHERS).read_text().splitlines()]
    assert fathers[0] == {"query_id": 1, "phrase": "leather jacket", "phrase_father": "jacket"}
    knowledge = read_knowledge_base(tmp_path)
    assert knowledge.concepts == CONCEPTS
    assert not knowledge.skipped
    assert not list(tmp_path.glob("*.tmp"))


def test_malformed_lines_and_unknown_fathers_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    write_lines(
        tmp_path / QUERIES,
        [
            {"query_id": 0, "query_text": "a photo of jacket", "phrase": "jacket"},
            "{not json",
            {"query_id": "x", "query_text": "a photo of hat", "phrase": "hat"},
            {"query_id": 0, "query_text": "again", "phrase": "coat"},
            {"query_id": 4, "query_text": "a photo of red jacket", "phrase": "red jacket"},
            "",
            {"query_id": 5, "query_text": "a photo of blue jacket", "phrase": "blue jacket"},
        ],
    )
    write_lines(
        tmp_path / FATHERS,
        [
            {"query_id": 4, "phrase": "red jacket", "phrase_father": "jacket"},
            {"query_id": 5, "phrase": "blue jacket", "phrase_father": "garment"},
            {"query_id": 9, "phrase": "green jacket", "phrase_father": "jacket"},
            {"query_id": 0, "phrase": "jacket", "phrase_father": None},
            [1, 2],
        ],
    )
    knowledge = read_knowledge_base(tmp_path)
    assert [(c.phrase, c.father) for c in knowledge.concepts] == [
        ("jacket", None),
        ("red jacket", "jacket"),
        ("blue jacket", None),
    ]
    assert knowledge.skipped == {
        "malformed line": 3,
        "duplicate concept": 1,
        "unknown father": 1,
        "unknown phrase": 1,
    }
    assert f"{tmp_path / QUERIES}:2" in caplog.text
    assert f"{tmp_path / FATHERS}:2" in caplog.text and "'garment'" in caplog.text


def test_a_cycle_is_broken_once_and_counted(tmp_path: Path) -> None:
    write_lines(
        tmp_path / QUERIES,
        [{"query_id": i, "query_text": f"a photo of {p}", "phrase": p} for i, p in enumerate("abcd")],
    )
    write_lines(
        tmp_path / FATHERS,
        [
            {"query_id": 0, "phrase": "a", "phrase_father": "b"},
            {"query_id": 1, "phrase": "b", "phrase_father": "c"},
            {"query_id": 2, "phrase": "c", "phrase_father": "a"},
            {"query_id": 3, "phrase": "d", "phrase_father": "a"},
        ],
    )
    knowledge = read_knowledge_base(tmp_path)
    fathers = {c.phrase: c.father for c in knowledge.concepts}
    assert knowledge.skipped == {"cycle": 1}
    assert fathers == {"a": "b", "b": "c", "c": None, "d": "a"}


def test_missing_or_empty_knowledge_base_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="fashion_clip.knowledge.build"):
        read_knowledge_base(tmp_path)
    write_lines(tmp_path / QUERIES, ["garbage"])
    with pytest.raises(UserError, match="no usable concept"):
        read_knowledge_base(tmp_path)
    write_knowledge_base(CONCEPTS, tmp_path, overwrite=True)  # replaces the broken base
    np.savez(tmp_path / IMAGES, **{"0": np.zeros((2, 2)), "1": np.array(["k9"])})
    knowledge = read_knowledge_base(tmp_path)
    assert [c.image_keys for c in knowledge.concepts] == [(), ("k9",), ()]
    assert knowledge.skipped == {"unusable image entry": 1}


def test_build_from_demo_shards_prints_summary(small_catalogue: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "kb"
    main(["--data", str(small_catalogue / "demo" / "train"), "--out", str(out), "--min-count", "3"])
    printed = capsys.readouterr().out
    assert "| concepts |" in printed and "hierarchy levels" in printed
    concepts = read_knowledge_base(out).concepts
    phrases = {c.phrase for c in concepts}
    assert {"jacket", "dress", "leather"} & phrases
    assert all(c.father is None or c.father in phrases for c in concepts)
    assert all(0 < len(c.image_keys) <= 8 for c in concepts)


def test_build_from_a_json_mapping(tmp_path: Path) -> None:
    records = [{"image_path": f"{i}.jpg", "caption": "Red leather jacket"} for i in range(3)]
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps(records))
    concepts = build_knowledge_base(str(mapping), tmp_path / "kb", min_count=3, images_per_concept=2)
    assert {c.phrase for c in concepts} == {
        "jacket",
        "leather jacket",
        "red leather jacket",
        "leather",
        "red leather",
    }
    assert concepts[0].image_keys == ("0.jpg", "1.jpg")


def test_build_errors_exit_2_with_a_message(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path / "nothing.json"), "--out", str(tmp_path / "kb")])
    assert exit_info.value.code == 2
    assert "nothing.json" in capsys.readouterr().err
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps([{"image_path": "0.jpg", "caption": "a red thing"}]))
    with pytest.raises(SystemExit):
        main(["--data", str(mapping), "--out", str(tmp_path / "kb")])
    assert "--vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "kb").exists()
