"""`python -m fashion_clip.ingest.sources.fashiongen`: Fashion-Gen raw pickles + PNGs to a JSON mapping.

Layout read: ROOT/full_{split}_info_PAI/*.pkl (one dict per image: img_name, captions, super_cls_name,
product_id) next to ROOT/extracted_{split}_images/{product_id}_{k}.png.
An existing output JSON (or its `.skipped.json` sidecar) is replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fashion_clip.errors import UserError
from fashion_clip.ingest.items import (
    BAD_PICKLE,
    EMPTY_CAPTION,
    MISSING_IMAGE,
    MISSING_KEY,
    CatalogueItem,
    Entry,
    Rejected,
    caption_list,
    clean_captions,
    decode_text,
    without_duplicates,
)
from fashion_clip.ingest.run_summary import (
    EXIT_NOTHING_WRITTEN,
    EXIT_OK,
    EXIT_UNUSABLE_INPUT,
    print_line,
    skipped_table,
)
from fashion_clip.utils.files import atomic_output, refuse_existing

PROG = "fashion-clip-fashiongen"
REQUIRED = ("img_name", "captions", "super_cls_name", "product_id")
SAFE_GLOBALS = {
    ("_codecs", "encode"),
    ("__builtin__", "bytes"),
    ("builtins", "bytes"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _MetadataUnpickler(pickle.Unpickler):
    """Loads plain data only: a metadata pickle has no business importing code."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which metadata never needs")


class TextCounter:
    """Decodes Python 2 byte strings, counting the ones that needed the windows-1252 fallback."""

    def __init__(self) -> None:
        self.fallbacks = 0

    def __call__(self, value: object) -> object:
        """Text for bytes, lists of text for lists, anything else unchanged."""
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if not isinstance(value, bytes):
            return value
        text, fallback = decode_text(value)
        self.fallbacks += fallback
        return text


def load_info(path: Path, text: TextCounter) -> dict:
    """One metadata pickle as a str-keyed dict; Python 2 pickles come back as bytes and are decoded here."""
    with open(path, "rb") as f:
        raw = _MetadataUnpickler(f, encoding="bytes").load()
    if not isinstance(raw, dict):
        raise pickle.UnpicklingError(f"expected a dict, got {type(raw).__name__}")
    return {str(text(k)): text(v) for k, v in raw.items()}


def info_entry(index: int, path: Path, image_dir: Path, text: TextCounter) -> Entry:
    """An item for one pickle, or why it is unusable."""
    try:
        info = load_info(path, text)
    except Exception as e:  # pickle signals corruption with many exception types
        return Rejected(index, path.name, BAD_PICKLE, f"{type(e).__name__}: {e}")
    missing = [key for key in REQUIRED if key not in info]
    if missing:
        return Rejected(index, path.name, MISSING_KEY, f"no {', '.join(map(repr, missing))}")
    name = str(info["img_name"])
    captions = clean_captions(caption_list(info["captions"]))
    if not captions:
        return Rejected(index, name, EMPTY_CAPTION, "caption is empty or whitespace")
    image = image_dir / name
    if not image.is_file():
        return Rejected(index, name, MISSING_IMAGE, f"{image} does not exist")
    return CatalogueItem(index, name, image, captions, str(info["product_id"]), str(info["super_cls_name"]))


def raw_entries(root: Path, split: str, text: TextCounter) -> Iterator[Entry]:
    """Items in pickle-name order, so the JSON (and the shards after it) are the same on every run."""
    info_dir = root / f"full_{split}_info_PAI"
    for index, path in enumerate(sorted(info_dir.glob("*.pkl"))):
        yield info_entry(index, path, root / f"extracted_{split}_images", text)


def mapping_record(item: CatalogueItem, base: Path) -> dict:
    """The seeds' JSON object; `captions` is added only when there are several (augmented data)."""
    record = {
        "image_path": os.path.relpath(item.image, base),
        "image_name": item.name,
        "caption": item.captions[0],
        "category": item.category,
        "product_id": item.product_id,
    }
    return {**record, "captions": list(item.captions)} if len(item.captions) > 1 else record


def write_json(path: Path, payload: object) -> None:
    """Atomic write, so an interrupted conversion never leaves a half list that parses as an error later."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options for the conversion; the output defaults to ROOT/clip_dataset_{split}.json."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="the raw Fashion-Gen download")
    parser.add_argument("--split", required=True, help="split as named in the folders: train or valid")
    parser.add_argument("--out", type=Path, help="output JSON (default: ROOT/clip_dataset_{split}.json)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output JSON and its .skipped.json"
    )
    return parser.parse_args(argv)


def convert(root: Path, split: str, out: Path, console: Console, overwrite: bool = False) -> int:
    """Write the mapping and its `.skipped.json` sidecar, report both, and return the exit code."""
    info_dir = root / f"full_{split}_info_PAI"
    if not info_dir.is_dir() or not any(info_dir.glob("*.pkl")):
        print_line(console, f"{PROG}: error: no pickles in {info_dir}; is --root the Fashion-Gen folder?")
        return EXIT_UNUSABLE_INPUT
    for path in (out, out.with_suffix(".skipped.json")):
        refuse_existing(path, overwrite, "--overwrite")
    text = TextCounter()
    entries = list(without_duplicates(raw_entries(root, split, text)))
    items = [e for e in entries if isinstance(e, CatalogueItem)]
    skipped = [{**e.record(), "split": split} for e in entries if isinstance(e, Rejected)]
    write_json(out, [mapping_record(item, out.parent) for item in items])
    write_json(out.with_suffix(".skipped.json"), skipped)
    table = Table(title="Written")
    for column in ("split", "entries", "skipped"):
        table.add_column(column)
    table.add_row(split, str(len(items)), str(len(skipped)))
    console.print(table)
    print_line(console, f"{split}: {out} (skipped items listed in {out.with_suffix('.skipped.json').name})")
    if skipped:
        console.print(skipped_table(skipped))
    if text.fallbacks:
        print_line(console, f"{text.fallbacks} texts were not valid UTF-8; decoded as windows-1252")
    return EXIT_OK if items else EXIT_NOTHING_WRITTEN


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; exit 0 if any entry was written, 1 if none, 2 if ROOT is not the raw layout
    or the output exists without --overwrite."""
    args = _parse_args(argv)
    console = Console()
    out = args.out or args.root / f"clip_dataset_{args.split}.json"
    try:
        return convert(args.root, args.split, out, console, args.overwrite)
    except UserError as e:
        print_line(console, f"{PROG}: error: {e}")
        return EXIT_UNUSABLE_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
