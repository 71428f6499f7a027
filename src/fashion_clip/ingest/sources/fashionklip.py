"""`python -m fashion_clip.ingest.sources.fashionklip`: FashionKLIP's queries JSONL + images `.npz` to shards.

Each image becomes one sample whose captions are the texts of every query that lists it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from zipfile import BadZipFile

import numpy as np

from fashion_clip.ingest.cli import UnusableInput, parse, run_writer, write_splits
from fashion_clip.ingest.items import (
    BAD_RECORD,
    EMPTY_CAPTION,
    MISSING_IMAGE,
    CatalogueItem,
    Entry,
    Rejected,
    clean_captions,
)
from fashion_clip.ingest.shard_journal import file_identity
from fashion_clip.ingest.sources.json_mapping import MappingError, fallback_note, read_records
from fashion_clip.ingest.split_writer import SplitResult

PROG = "fashion-clip-fashionklip"


def query_captions(records: Sequence[object]) -> tuple[dict[str, list[str]], list[Rejected]]:
    """Image id -> texts of the queries listing it (file order), plus the query lines that are unusable."""
    captions: dict[str, list[str]] = {}
    bad: list[Rejected] = []
    for number, record in enumerate(records):
        if isinstance(record, Rejected):
            bad.append(record)
        elif not isinstance(record, dict) or not isinstance(record.get("item_ids"), list):
            bad.append(
                Rejected(number, f"query {number}", BAD_RECORD, "needs query_text and an item_ids list")
            )
        else:
            for item in record["item_ids"]:
                captions.setdefault(str(item), []).append(str(record.get("query_text") or ""))
    return captions, bad


class KlipSource:
    """Queries held in memory (small); image arrays read from the `.npz` one at a time on each pass."""

    def __init__(self, queries: Path, images: Path) -> None:
        try:
            records, self.fallbacks = read_records(queries)
            with np.load(images, allow_pickle=False) as npz:
                self.image_ids = set(npz.files)
        except (MappingError, OSError, BadZipFile, ValueError) as e:
            raise UnusableInput(f"unreadable FashionKLIP input: {e}") from e
        self.images = images
        self.captions, self.bad_queries = query_captions(records)
        if not self.captions:
            raise UnusableInput(f"{queries}: no query has an item_ids list")
        self.ids = sorted(self.image_ids | set(self.captions))

    def _entry(self, index: int, image_id: str, npz: np.lib.npyio.NpzFile) -> Entry:
        """One image with all its queries, or why it cannot be a sample."""
        if image_id not in self.image_ids:
            return Rejected(
                index, image_id, MISSING_IMAGE, f"listed by a query but absent from {self.images.name}"
            )
        captions = clean_captions(self.captions.get(image_id, []))
        if not captions:
            return Rejected(index, image_id, EMPTY_CAPTION, "no query with text lists this image")
        return CatalogueItem(index, image_id, npz[image_id], captions, image_id)

    def entries(self) -> Iterator[Entry]:
        """Unusable queries first, then images in id order, so positions are stable between runs."""
        offset = len(self.bad_queries)
        for index, rejected in enumerate(self.bad_queries):
            yield Rejected(index, rejected.name, rejected.reason, rejected.detail)
        with np.load(self.images, allow_pickle=False) as npz:
            for index, image_id in enumerate(self.ids, start=offset):
                yield self._entry(index, image_id, npz)


def _parser() -> argparse.ArgumentParser:
    """This tool's own options; the shard-writing ones are added by `parse`."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--queries", type=Path, required=True, help="JSONL: query_id, query_text, item_ids")
    parser.add_argument("--images", type=Path, required=True, help=".npz of image arrays keyed by image id")
    return parser


def build(args: argparse.Namespace) -> tuple[list[SplitResult], list[str]]:
    """Index queries and images, then write the split(s)."""
    for path in (args.queries, args.images):
        if not path.is_file():
            raise UnusableInput(f"{path}: no such file")
    source = KlipSource(args.queries, args.images)
    identity = {"queries": file_identity(args.queries), "images": file_identity(args.images)}
    total = len(source.ids) + len(source.bad_queries)
    results = write_splits(source.entries, args, args.queries, identity, total)
    return results, fallback_note(source.fallbacks, "strings were")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; exit 0 if anything was written, 1 if nothing was, 2 if the input is unusable."""
    args = parse(_parser(), argv)
    return run_writer(lambda: build(args), PROG)


if __name__ == "__main__":
    raise SystemExit(main())
