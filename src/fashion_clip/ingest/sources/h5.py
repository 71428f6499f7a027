"""`python -m fashion_clip.ingest.sources.h5`: Fashion-Gen's HDF5 files streamed into shards.

The train file is ~20 GB, so rows are read a block at a time (aligned with the file's chunks) and never
all at once; descriptions that are not valid UTF-8 are decoded as windows-1252 and counted.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from fashion_clip.ingest.cli import UnusableInput, parse, run_writer, write_splits
from fashion_clip.ingest.items import (
    EMPTY_CAPTION,
    CatalogueItem,
    Entry,
    Rejected,
    clean_captions,
    decode_text,
)
from fashion_clip.ingest.shard_journal import file_identity
from fashion_clip.ingest.sources.json_mapping import fallback_note
from fashion_clip.ingest.split_writer import SplitResult

PROG = "fashion-clip-h5"
IMAGE_FIELD = "input_image"
CATEGORY_FIELD = "input_category"
PRODUCT_FIELD = "input_productID"
POSE_FIELD = "input_pose"
BLOCK_ROWS = 256


def cell(value: object) -> object:
    """The scalar in an (N, 1) row cell, with numpy bytes and ints turned into Python ones."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    return value.item() if isinstance(value, np.generic) else value


class FashionGenH5:
    """One official HDF5 file, validated on open and read in blocks on each pass."""

    def __init__(self, path: Path, description_field: str) -> None:
        self.path = path
        self.description_field = description_field
        self.fallback_rows: set[int] = set()
        try:
            with h5py.File(path, "r") as f:
                self.fields = set(f.keys())
                required = {IMAGE_FIELD, description_field}
                if not required <= self.fields:
                    raise UnusableInput(
                        f"{path}: no {sorted(required - self.fields)}; fields are {sorted(self.fields)}"
                    )
                images = f[IMAGE_FIELD]
                if images.ndim != 4 or images.shape[-1] != 3:
                    raise UnusableInput(
                        f"{path}: {IMAGE_FIELD} has shape {images.shape}, expected N x H x W x 3"
                    )
                self.rows = images.shape[0]
                self.block = (
                    images.chunks[0] * max(1, BLOCK_ROWS // images.chunks[0]) if images.chunks else BLOCK_ROWS
                )
        except OSError as e:
            raise UnusableInput(f"{path}: not a readable HDF5 file ({e})") from e

    def _block(self, f: h5py.File, start: int, stop: int) -> dict[str, np.ndarray]:
        """One block of every field used, read with one slice each."""
        names = [IMAGE_FIELD, self.description_field, CATEGORY_FIELD, PRODUCT_FIELD, POSE_FIELD]
        return {name: f[name][start:stop] for name in names if name in self.fields}

    def _text(self, block: dict[str, np.ndarray], field: str, offset: int, row: int) -> str:
        """Cell text ('' if the field is absent); fallback rows go in a set so two passes count once."""
        value = cell(block[field][offset]) if field in block else ""
        if not isinstance(value, bytes | str):
            return str(value)
        text, fallback = decode_text(value)
        if fallback:
            self.fallback_rows.add(row)
        return text

    def _entry(self, row: int, block: dict[str, np.ndarray], offset: int) -> Entry:
        """An item for one row; the product id falls back to the row so grouping never merges strangers."""
        product = self._text(block, PRODUCT_FIELD, offset, row) or f"row{row}"
        name = f"{product}_{self._text(block, POSE_FIELD, offset, row) or row}"
        captions = clean_captions([self._text(block, self.description_field, offset, row)])
        if not captions:
            return Rejected(row, name, EMPTY_CAPTION, "description is empty or whitespace")
        category = self._text(block, CATEGORY_FIELD, offset, row)
        return CatalogueItem(row, name, block[IMAGE_FIELD][offset], captions, product, category)

    def entries(self) -> Iterator[Entry]:
        """Every row in file order, one block in memory at a time."""
        with h5py.File(self.path, "r") as f:
            for start in range(0, self.rows, self.block):
                block = self._block(f, start, min(start + self.block, self.rows))
                for offset in range(len(block[IMAGE_FIELD])):
                    yield self._entry(start + offset, block, offset)


def _parser() -> argparse.ArgumentParser:
    """This tool's own options; the shard-writing ones are added by `parse`."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--h5", type=Path, required=True, help="fashiongen_256_256_{train,validation}.h5")
    parser.add_argument("--description-field", default="input_description", help="field used as the caption")
    return parser


def build(args: argparse.Namespace) -> tuple[list[SplitResult], list[str]]:
    """Validate the file, then stream its split(s) into shards."""
    if not args.h5.is_file():
        raise UnusableInput(f"{args.h5}: no such file")
    source = FashionGenH5(args.h5, args.description_field)
    identity = {"source": file_identity(args.h5), "description_field": args.description_field}
    results = write_splits(source.entries, args, args.h5, identity, source.rows)
    return results, fallback_note(len(source.fallback_rows), "rows had text")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; exit 0 if anything was written, 1 if nothing was, 2 if the file is unusable."""
    args = parse(_parser(), argv)
    return run_writer(lambda: build(args), PROG)


if __name__ == "__main__":
    raise SystemExit(main())
