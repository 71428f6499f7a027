"""`python -m fashion_clip.knowledge.build --data <train shards or JSON> --out kb/`: a concept knowledge base.

Reads the training captions (images are not decoded), extracts frequent fashion noun phrases with their
hypernyms and example images, writes them in FashionKLIP's schema and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch.distributed as dist

from fashion_clip.data.raw_samples import raw_samples
from fashion_clip.data.samples import sample_captions
from fashion_clip.data.shard_spec import count_samples, resolve_shards
from fashion_clip.data.vocabulary import load_vocabulary
from fashion_clip.errors import MissingInputError, UserError, exit_on_user_error
from fashion_clip.ingest.sources.json_mapping import MappingError, MappingKeys, read_records, record_captions
from fashion_clip.knowledge.concepts import Concept, extract_concepts, summary_rows
from fashion_clip.knowledge.fashionklip_kb import QUERIES, refuse_existing_base, write_knowledge_base

log = logging.getLogger(__name__)

JSON_SUFFIXES = (".json", ".jsonl")


def shard_captions(spec: str | Sequence[str]) -> Iterator[tuple[str, list[str]]]:
    """(key, captions) per shard sample, read from the `.json`/`.txt` members without decoding images."""
    for sample in raw_samples(resolve_shards(spec, "train")):
        key = sample.get("__key__", "?")
        try:
            yield key, sample_captions(sample, json.loads(sample["json"]) if "json" in sample else {})
        except ValueError as e:  # JSONDecodeError included: one bad sample, not a failed build
            log.warning("sample %s in %s skipped: %s", key, sample.get("__url__", "?"), e)


def mapping_captions(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(image path, captions) per record of a JSON/JSONL image-caption mapping."""
    keys = MappingKeys()
    try:
        records, _ = read_records(path)
    except MappingError as e:
        raise UserError(f"{path}: {e}") from e
    for record in records:
        if isinstance(record, dict) and isinstance(record.get(keys.image), str):
            yield record[keys.image], list(record_captions(record, keys))


def training_captions(data: str | Sequence[str]) -> tuple[Iterator[tuple[str, list[str]]], int | None]:
    """Captions of a JSON mapping or of shards (directory, pattern, list), with the count when known."""
    if not isinstance(data, str):
        specs = [str(spec) for spec in data]
        return shard_captions(specs), count_samples(specs)
    path = Path(data).expanduser()
    if path.suffix in JSON_SUFFIXES:
        if not path.is_file():
            raise MissingInputError(f"--data {data}: no such file")
        return mapping_captions(path), None
    return shard_captions(data), count_samples(data)


def build_knowledge_base(
    data: str | Sequence[str],
    out: str | Path,
    vocabulary: Path | None = None,
    min_count: int = 5,
    max_words: int = 3,
    images_per_concept: int = 8,
    overwrite: bool = False,
) -> list[Concept]:
    """Extract the concepts of `data`'s captions and write them to `out`; the concepts are returned.

    An existing base in `out` is replaced only with `overwrite`, a directory holding other files never.
    """
    if min_count < 1 or max_words < 1 or images_per_concept < 0:
        raise UserError(
            f"--min-count {min_count}, --max-words {max_words}, --images-per-concept {images_per_concept}: "
            "the first two must be at least 1 and the last at least 0"
        )
    refuse_existing_base(Path(out), overwrite)  # before the caption scan, which takes minutes on a catalogue
    samples, total = training_captions(data)
    heads = load_vocabulary(vocabulary)
    concepts = extract_concepts(samples, heads, min_count, max_words, images_per_concept, total)
    if not concepts:
        raise UserError(
            f"no concept in '{data}' is mentioned by --min-count {min_count} samples; lower --min-count or "
            "add your catalogue's garment nouns with --vocabulary extra.txt"
        )
    write_knowledge_base(concepts, out, overwrite)
    return concepts


def group_rank() -> int | None:
    """This process's rank in an initialised torch.distributed process group; None when it runs alone."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else None


def build_missing_knowledge_base(data: str | Sequence[str], out: str | Path) -> None:
    """Build the base in `out` unless it holds one, on rank 0 only: the other ranks wait at a barrier and
    then read what it wrote (on a file system all ranks share). Every rank passes the barrier exactly once,
    whatever it found and even when the build fails, so no rank waits forever; no group, no barrier."""
    rank = group_rank()
    try:
        if rank in (None, 0) and not (Path(out) / QUERIES).is_file():
            log.info("no knowledge base in %s: building one from %s", out, data)
            build_knowledge_base(data, out)
    finally:
        if rank is not None:
            dist.barrier()


def markdown_table(rows: Sequence[tuple[str, str]]) -> str:
    """The summary as a Markdown table, readable in a terminal and pasteable into notes."""
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def parser() -> argparse.ArgumentParser:
    """The command-line options, with the defaults `loss=concept` uses when it builds a base itself."""
    p = argparse.ArgumentParser(prog="fashion-clip-knowledge", description=__doc__)
    p.add_argument(
        "--data",
        required=True,
        help="training shards (directory, brace pattern, glob) or a JSON/JSONL mapping",
    )
    p.add_argument("--out", required=True, type=Path, help="directory for the knowledge-base files")
    p.add_argument(
        "--vocabulary", type=Path, help="extra head nouns, one per line, added to the shipped list"
    )
    p.add_argument("--min-count", type=int, default=5, help="samples that must mention a concept (default 5)")
    p.add_argument("--max-words", type=int, default=3, help="longest concept phrase in words (default 3)")
    p.add_argument(
        "--images-per-concept", type=int, default=8, help="example images kept per concept (default 8)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the knowledge base in --out (a directory holding other files is never replaced)",
    )
    return p


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: build, then print what was written and the summary."""
    args = parser().parse_args(argv)
    concepts = build_knowledge_base(
        args.data,
        args.out,
        args.vocabulary,
        args.min_count,
        args.max_words,
        args.images_per_concept,
        args.overwrite,
    )
    print(f"knowledge base written to {args.out}")
    print(markdown_table(summary_rows(concepts)))


if __name__ == "__main__":
    main()
