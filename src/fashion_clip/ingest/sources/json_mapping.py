"""`python -m fashion_clip.ingest.sources.json_mapping`: a JSON / JSONL image-caption mapping to shards.

Fashion-Gen seeds, IndoFashion and augmented-caption files are such mappings.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fashion_clip.ingest.cli import UnusableInput, parse, run_writer, write_splits
from fashion_clip.ingest.items import (
    BAD_RECORD,
    EMPTY_CAPTION,
    MISSING_KEY,
    CatalogueItem,
    Entry,
    Rejected,
    caption_list,
    clean_captions,
    decode_text,
)
from fashion_clip.ingest.shard_journal import file_identity
from fashion_clip.ingest.split_writer import SplitResult


class MappingError(ValueError):
    """The file as a whole is not a mapping this reader understands."""


@dataclass(frozen=True)
class MappingKeys:
    """Which record fields hold what; datasets disagree (IndoFashion: `product_title`, `class_label`)."""

    image: str = "image_path"
    caption: str = "caption"
    captions: str = "captions"
    category: str = "category"
    product: str = "product_id"
    name: str = "image_name"


@dataclass
class Repairs:
    """How many strings were not valid UTF-8 and were decoded with the fallback instead."""

    fallbacks: int = 0

    def text(self, value: str) -> str:
        """Re-decode a string that carried undecodable bytes through `surrogateescape`."""
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            text, _ = decode_text(value.encode("utf-8", "surrogateescape"))
            self.fallbacks += 1
            return text

    def tree(self, value: object) -> object:
        """Repair every string inside a parsed record, keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.tree(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.tree(v) for k, v in value.items()}
        return value


def _parse_lines(text: str, path: Path) -> list[object]:
    """JSONL: one record per line; a bad line becomes a rejected record, not a failed file."""
    records: list[object] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                records.append(Rejected(len(records), f"{path.name}:{number}", BAD_RECORD, str(e)))
    return records


def _looks_like_lines(text: str) -> bool:
    """True when the first line alone is a JSON object: IndoFashion ships JSON Lines named `.json`."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def read_records(path: Path) -> tuple[list[object], int]:
    """Records of a JSON list or a JSON Lines file, plus how many strings needed the encoding fallback."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    try:
        records = _parse_lines(text, path) if path.suffix == ".jsonl" else json.loads(text)
    except json.JSONDecodeError as e:
        if not _looks_like_lines(text):
            raise MappingError(f"not valid JSON or JSON Lines ({e})") from e
        records = _parse_lines(text, path)
    if not isinstance(records, list):
        raise MappingError(f"expected a JSON list of objects, got {type(records).__name__}")
    repairs = Repairs()
    return [r if isinstance(r, Rejected) else repairs.tree(r) for r in records], repairs.fallbacks


def check_keys(records: Sequence[object], keys: MappingKeys) -> None:
    """Fail fast when no record has the image or caption key: that is a wrong flag, not bad records."""
    objects = [r for r in records if isinstance(r, dict)]
    if not objects:
        raise MappingError("no JSON objects found")
    seen = sorted({k for r in objects for k in r})
    if not any(keys.image in r for r in objects):
        raise MappingError(f"no entry has the image key {keys.image!r}; keys seen: {seen}; pass --image-key")
    if not any(keys.caption in r or keys.captions in r for r in objects):
        raise MappingError(
            f"no entry has the caption key {keys.caption!r} or {keys.captions!r}; keys seen: {seen}; "
            "pass --caption-key"
        )


def record_captions(record: dict, keys: MappingKeys) -> tuple[str, ...]:
    """The single caption first, then the list (paraphrases), without repeating the original."""
    texts = caption_list(record.get(keys.caption)) + caption_list(record.get(keys.captions))
    return clean_captions(texts)


def record_entry(index: int, record: object, keys: MappingKeys, image_root: Path) -> Entry:
    """One record as an item; relative image paths are taken from `image_root`."""
    if isinstance(record, Rejected):
        return Rejected(index, record.name, record.reason, record.detail)
    if not isinstance(record, dict):
        detail = f"expected an object, got {type(record).__name__}"
        return Rejected(index, f"entry {index}", BAD_RECORD, detail)
    image = record.get(keys.image)
    name = str(record.get(keys.name) or image or f"entry {index}")
    if not isinstance(image, str) or not image:
        return Rejected(index, name, MISSING_KEY, f"no {keys.image!r}")
    if keys.caption not in record and keys.captions not in record:
        return Rejected(index, name, MISSING_KEY, f"no {keys.caption!r} or {keys.captions!r}")
    captions = record_captions(record, keys)
    if not captions:
        return Rejected(index, name, EMPTY_CAPTION, "caption is empty or whitespace")
    path = Path(image) if Path(image).is_absolute() else image_root / image
    product = str(record.get(keys.product) or image)
    return CatalogueItem(index, name, path, captions, product, str(record.get(keys.category) or ""))


def mapping_entries(records: Iterable[object], keys: MappingKeys, image_root: Path) -> list[Entry]:
    """Every record as an item or a rejection, numbered by position in the file."""
    return [record_entry(i, r, keys, image_root) for i, r in enumerate(records)]


PROG = "fashion-clip-shards"


def fallback_note(count: int, what: str) -> list[str]:
    """The line telling users how many texts were not UTF-8, since those may read oddly."""
    return [f"{count} {what} not valid UTF-8; decoded as windows-1252"] if count else []


def _parser() -> argparse.ArgumentParser:
    """This tool's own options; the shard-writing ones are added by `parse`."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--json", type=Path, required=True, help="a .json list of objects or a .jsonl file")
    parser.add_argument("--image-root", type=Path, help="base of relative image paths (default: JSON dir)")
    defaults = MappingKeys()
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field}-key", default=value, help=f"record key of the {field}")
    return parser


def build(args: argparse.Namespace) -> tuple[list[SplitResult], list[str]]:
    """Read and validate the mapping, then write its split(s)."""
    if not args.json.is_file():
        raise UnusableInput(f"{args.json}: no such file")
    keys = MappingKeys(**{field: getattr(args, f"{field}_key") for field in asdict(MappingKeys())})
    try:
        records, fallbacks = read_records(args.json)
        check_keys(records, keys)
    except MappingError as e:
        raise UnusableInput(f"{args.json}: {e}") from e
    root = args.image_root or args.json.parent
    entries = mapping_entries(records, keys, root)
    identity = {"source": file_identity(args.json), "keys": asdict(keys), "image_root": str(root.resolve())}
    results = write_splits(lambda: entries, args, args.json, identity, len(entries))
    return results, fallback_note(fallbacks, "strings were")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; exit 0 if anything was written, 1 if nothing was, 2 if the input is unusable."""
    args = parse(_parser(), argv)
    return run_writer(lambda: build(args), PROG)


if __name__ == "__main__":
    raise SystemExit(main())
