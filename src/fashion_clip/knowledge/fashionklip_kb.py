"""Knowledge-base files in FashionKLIP's schema, so their published sample knowledge base loads too.

`concepts_queries.jsonl`: `query_id`, `query_text` (the prompt), `phrase`.
`concepts_fathers.jsonl`: `query_id`, `phrase`, `phrase_father` (roots: no line, or a null/empty father).
`concept_images.npz`: per `query_id` (as a string), an array of the example images' catalogue keys.
Unusable lines are skipped, logged with file and line, and counted; a cycle is broken and counted.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zipfile import BadZipFile

import numpy as np

from fashion_clip.errors import MissingInputError, UserError
from fashion_clip.knowledge.concepts import Concept
from fashion_clip.utils.files import atomic_directory, refuse_replacing, write_jsonl

log = logging.getLogger(__name__)

QUERIES = "concepts_queries.jsonl"
FATHERS = "concepts_fathers.jsonl"
IMAGES = "concept_images.npz"
BASE_FILES = (QUERIES, FATHERS, IMAGES)
OVERWRITE_SWITCH = "--overwrite"


@dataclass
class KnowledgeBase:
    """Concepts in file order, plus what was skipped and why (reason -> count)."""

    concepts: list[Concept]
    skipped: Counter[str] = field(default_factory=Counter)


def refuse_existing_base(out: Path, overwrite: bool) -> None:
    """A directory holding something is replaced only with --overwrite, and only when it holds nothing but
    base files: a user's own file there is refused even with --overwrite, never deleted."""
    refuse_replacing(out, overwrite, OVERWRITE_SWITCH, BASE_FILES)


def write_knowledge_base(
    concepts: Sequence[Concept], out_dir: str | Path, overwrite: bool = False
) -> list[Path]:
    """The three files, written into a fresh directory renamed to `out_dir` whole, so neither a crash nor a
    reader ever sees half a base; an existing base is replaced only with `overwrite` (see above)."""
    out = Path(out_dir)
    refuse_existing_base(out, overwrite)
    queries = ({"query_id": c.query_id, "query_text": c.prompt, "phrase": c.phrase} for c in concepts)
    with_father = [c for c in concepts if c.father is not None]
    fathers = ({"query_id": c.query_id, "phrase": c.phrase, "phrase_father": c.father} for c in with_father)
    with atomic_directory(out) as tmp:
        write_jsonl(tmp / QUERIES, queries, len(concepts))
        write_jsonl(tmp / FATHERS, fathers, len(with_father))
        with open(tmp / IMAGES, "wb") as f:
            np.savez(f, **{str(c.query_id): np.array(c.image_keys, dtype=str) for c in concepts})
    return [out / name for name in BASE_FILES]


def jsonl_objects(path: Path, skipped: Counter[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per usable line; blank lines are ignored, malformed ones skipped and counted."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                record = f"not JSON ({e})"
            if isinstance(record, dict):
                yield number, record
            else:
                skip(skipped, "malformed line", path, number, f"expected a JSON object, got {record!r:.80}")


def skip(skipped: Counter[str], reason: str, path: Path, number: int, detail: str) -> None:
    """Count a skipped line and say where it is, so a user can fix the file."""
    skipped[reason] += 1
    log.warning("%s:%d: %s skipped: %s", path, number, reason, detail)


def read_queries(path: Path, skipped: Counter[str]) -> dict[str, tuple[int, str]]:
    """Phrase -> (query id, prompt), keeping the first line of a repeated phrase or id."""
    queries: dict[str, tuple[int, str]] = {}
    ids: set[int] = set()
    for number, record in jsonl_objects(path, skipped):
        query_id, text, phrase = record.get("query_id"), record.get("query_text"), record.get("phrase")
        if not isinstance(query_id, int) or isinstance(query_id, bool) or not isinstance(text, str):
            skip(skipped, "malformed line", path, number, "needs an integer query_id and a query_text string")
        elif not isinstance(phrase, str) or not phrase.strip():
            skip(skipped, "malformed line", path, number, "needs a non-empty phrase string")
        elif phrase in queries or query_id in ids:
            skip(
                skipped,
                "duplicate concept",
                path,
                number,
                f"phrase {phrase!r} or query_id {query_id} seen before",
            )
        else:
            queries[phrase] = (query_id, text)
            ids.add(query_id)
    return queries


def read_fathers(path: Path, phrases: dict[str, Any], skipped: Counter[str]) -> dict[str, tuple[str, int]]:
    """Phrase -> (father phrase, line); links to or from phrases absent from the queries are skipped."""
    fathers: dict[str, tuple[str, int]] = {}
    for number, record in jsonl_objects(path, skipped):
        phrase, father = record.get("phrase"), record.get("phrase_father")
        if not isinstance(phrase, str) or (father is not None and not isinstance(father, str)):
            skip(skipped, "malformed line", path, number, "needs phrase and phrase_father strings")
        elif phrase not in phrases:
            skip(skipped, "unknown phrase", path, number, f"{phrase!r} is not in {QUERIES}")
        elif not father or father == phrase:
            continue
        elif father not in phrases:
            skip(
                skipped,
                "unknown father",
                path,
                number,
                f"father {father!r} of {phrase!r} is not in {QUERIES}",
            )
        else:
            fathers.setdefault(phrase, (father, number))
    return fathers


def break_cycles(fathers: dict[str, tuple[str, int]], path: Path, skipped: Counter[str]) -> None:
    """Drop one link per cycle (the one that closes it), so every walk up the hierarchy ends at a root."""
    for start in list(fathers):
        seen = {start}
        phrase = start
        while phrase in fathers:
            father, number = fathers[phrase]
            if father in seen:
                skip(skipped, "cycle", path, number, f"{phrase!r} -> {father!r} closes a cycle; link dropped")
                del fathers[phrase]
                break
            seen.add(father)
            phrase = father


def read_image_keys(path: Path, skipped: Counter[str]) -> dict[int, tuple[str, ...]]:
    """Query id -> example image keys; an optional file, since FashionKLIP bases may ship images apart."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, BadZipFile, ValueError) as e:
        raise UserError(f"{path}: unreadable concept images file ({e}); rebuild it or remove it") from e
    keys: dict[int, tuple[str, ...]] = {}
    for name, array in arrays.items():
        if not name.isdigit() or array.dtype.kind != "U":
            skipped["unusable image entry"] += 1
            log.warning("%s: entry %r skipped: needs a query id name and an array of image keys", path, name)
            continue
        keys[int(name)] = tuple(array.reshape(-1).tolist())
    return keys


def read_knowledge_base(directory: str | Path) -> KnowledgeBase:
    """The concepts of a knowledge-base directory; fails only when no concept at all is usable."""
    root = Path(directory)
    queries_path = root / QUERIES
    if not queries_path.is_file():
        raise MissingInputError(
            f"knowledge base '{root}' has no {QUERIES}; build one with "
            f"`python -m fashion_clip.knowledge.build --data <train shards> --out {root}`"
        )
    skipped: Counter[str] = Counter()
    queries = read_queries(queries_path, skipped)
    if not queries:
        raise UserError(f"{queries_path}: no usable concept line (see the warnings above for each line)")
    fathers_path = root / FATHERS
    fathers = read_fathers(fathers_path, queries, skipped) if fathers_path.is_file() else {}
    break_cycles(fathers, fathers_path, skipped)
    images = read_image_keys(root / IMAGES, skipped)
    concepts = [
        Concept(
            query_id,
            phrase,
            fathers[phrase][0] if phrase in fathers else None,
            prompt,
            images.get(query_id, ()),
        )
        for phrase, (query_id, prompt) in queries.items()
    ]
    return KnowledgeBase(concepts, skipped)
