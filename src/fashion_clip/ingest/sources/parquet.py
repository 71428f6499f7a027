"""`python -m fashion_clip.ingest.sources.parquet`: Hugging Face hub datasets (parquet) streamed into shards.

Reads the `*.parquet` files of a downloaded hub dataset (`huggingface-cli download Marqo/KAGL --repo-type
dataset --local-dir DIR`) or the `*.arrow` files of a `datasets` cache folder, a row-group slice (or an
Arrow record batch) at a time, so memory does not grow with the dataset. Each row becomes one sample: its
image from the `Image` feature's bytes (or a relative path inside the dataset folder), its caption from a
text column (or several joined), its product from the id column (rows sharing an id are views of one
product), and the chosen metadata columns copied into its json as they are. `--preset` names the columns
of Marqo's 7 fashion evaluation datasets; the column options override it.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from fashion_clip.ingest.cli import UnusableInput, infer_split, parse, run_writer, write_splits
from fashion_clip.ingest.items import (
    EMPTY_CAPTION,
    MISSING_IMAGE,
    UNSAFE_PATH,
    CatalogueItem,
    Entry,
    Rejected,
    caption_list,
    clean_captions,
)
from fashion_clip.ingest.shard_journal import file_identity
from fashion_clip.ingest.split_writer import SplitResult
from fashion_clip.utils.files import name_problem

PROG = "fashion-clip-parquet"
# rows decoded into Python at once: ~25 MB of hub-sized images, well under one of their row groups
BATCH_ROWS = 64
ARROW = ".arrow"
SUFFIXES = (".parquet", ARROW)
# `datasets` keeps the results of .map()/.filter() beside a dataset's own Arrow files under this prefix
DATASETS_CACHE_PREFIX = "cache-"
# fields every sample's json has; a metadata column of the same name would be overwritten
RESERVED = ("product_id", "captions", "image_name")


@dataclass(frozen=True)
class Columns:
    """Which columns hold what; the defaults are the ones all of Marqo's datasets share. `category`,
    `subcategory` and `colour` fill those json keys (category_hard batching, the attributes protocol)."""

    image: str = "image"
    id: str = "item_ID"
    caption: tuple[str, ...] = ("text",)
    category: str = ""
    subcategory: str = ""
    colour: str = ""
    metadata: tuple[str, ...] = ()

    def json_keys(self) -> dict[str, str]:
        """json key -> column; a metadata column already named like one of the keys fills it."""
        named = {"category": self.category, "subcategory": self.subcategory, "colour": self.colour}
        return {key: column or key for key, column in named.items() if column or key in self.metadata}

    def needed(self) -> list[str]:
        """Every column a row is built from, once each: the only ones read from disk."""
        named = [self.image, self.id, *self.caption, *self.json_keys().values(), *self.metadata]
        return list(dict.fromkeys(c for c in named if c))


# Column names from each dataset card's `dataset_info` on the hub (huggingface.co/datasets/Marqo/<name>,
# README.md, August 2024 uploads); category and subcategory are the columns Marqo's category-to-product
# and sub-category-to-product tasks query (github.com/marqo-ai/marqo-FashionCLIP, configs/*.json).
PRESETS = {
    # gender, category, sub-category, text, item_ID
    "atlas": Columns(
        category="category", subcategory="sub-category", metadata=("gender", "category", "sub-category")
    ),
    # category1-3, color, description, text, item_ID (several images per item)
    "deepfashion_inshop": Columns(
        category="category2",
        subcategory="category3",
        metadata=("category1", "category2", "category3", "color", "description"),
    ),
    # category1-2, text, item_ID; category3 is typed float64 in the card, so probably empty: left out
    "deepfashion_multimodal": Columns(category="category2", metadata=("category1", "category2")),
    # category1-3, text, item_ID
    "fashion200k": Columns(
        category="category1", subcategory="category2", metadata=("category1", "category2", "category3")
    ),
    # gender, color, material, sleeve, pattern, neckline, style, category, item_ID: no text column, so the
    # caption joins the attribute values (our choice: the values' wording is not confirmed)
    "imaterialist": Columns(
        caption=("color", "pattern", "material", "neckline", "sleeve", "style", "category"),
        category="category",
        metadata=("gender", "color", "material", "sleeve", "pattern", "neckline", "style", "category"),
    ),
    # gender, category1-3, baseColour, season, year, usage, text, item_ID
    "kagl": Columns(
        category="category1",
        subcategory="category2",
        colour="baseColour",
        metadata=("gender", "category1", "category2", "category3", "baseColour", "season", "year", "usage"),
    ),
    # category, text, item_ID
    "polyvore": Columns(category="category", metadata=("category",)),
}

COLUMN_OPTIONS = {
    "image": ("--image-column", "the image: HF `Image` struct {bytes, path}, binary, or relative paths"),
    "id": ("--id-column", "the product id: rows sharing it are views of one product"),
    "caption": ("--caption-column", "the caption column, or several (comma-separated) joined into one"),
    "category": ("--category-column", "fills the json's `category` (category_hard batching)"),
    "subcategory": ("--subcategory-column", "fills the json's `subcategory` (attributes protocol)"),
    "colour": ("--colour-column", "fills the json's `colour` (attributes protocol)"),
    "metadata": ("--metadata-columns", "comma-separated columns copied into each sample's json as they are"),
}
LIST_OPTIONS = ("caption", "metadata")


def column_list(text: str) -> tuple[str, ...]:
    """Comma-separated column names, blanks dropped."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def preset_name(text: str) -> str:
    """Marqo's spellings (`KAGL`, `iMaterialist`) and the hub's (`deepfashion-inshop`) all name a preset."""
    return text.lower().replace("-", "_")


def check_columns(columns: Columns) -> None:
    """Refuse a choice that cannot work, before any file is read."""
    if not columns.image or not columns.caption:
        raise UnusableInput("--image-column and --caption-column must name a column")
    keys = columns.json_keys()
    clashes = [c for c in columns.metadata if c in RESERVED or keys.get(c, c) != c]
    if clashes:
        raise UnusableInput(
            f"--metadata-columns {', '.join(clashes)}: the json already has fields of these names "
            f"({', '.join(f'{k} <- {v}' for k, v in keys.items())}, {', '.join(RESERVED)}); leave them out"
        )


@dataclass(frozen=True)
class Part:
    """One input file: where it is, the name its rows are reported under, its schema and row count."""

    path: Path
    label: str
    schema: pa.Schema
    rows: int | None


def part_files(path: Path) -> list[tuple[Path, str]]:
    """A file as given, or a folder's parquet/Arrow files in name order, each with the label its rows go by;
    hidden folders (a hub download's `.cache`) and `datasets`' own cache-* results are left out."""
    if path.is_file():
        return [(path, path.name)]
    if not path.is_dir():
        raise UnusableInput(f"{path}: no such file or folder")
    found = sorted(
        p
        for p in path.rglob("*")
        if p.suffix in SUFFIXES
        and not p.name.startswith(DATASETS_CACHE_PREFIX)
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and p.is_file()
    )
    if not found:
        raise UnusableInput(
            f"{path}: no .parquet or .arrow files in it; give the dataset's folder (a hub download holds "
            "data/*.parquet) or its files"
        )
    return [(p, p.relative_to(path).as_posix()) for p in found]


def open_part(path: Path, label: str) -> Part:
    """The file's schema and row count, from its footer (parquet) or its stream header (Arrow)."""
    try:
        if path.suffix == ARROW:
            with pa.memory_map(str(path)) as source:
                return Part(path, label, pa.ipc.open_stream(source).schema, None)
        with pq.ParquetFile(path) as parquet:
            return Part(path, label, parquet.schema_arrow, parquet.metadata.num_rows)
    except (pa.ArrowException, OSError) as e:
        raise UnusableInput(f"{path}: not a readable parquet file or Arrow stream ({e})") from e


def is_image_type(kind: pa.DataType) -> bool:
    """The types hub datasets store images as: the `Image` feature's {bytes, path} struct, bytes, paths."""
    if pa.types.is_struct(kind):
        return bool({"bytes", "path"} & {kind.field(i).name for i in range(kind.num_fields)})
    return any(
        test(kind)
        for test in (
            pa.types.is_binary,
            pa.types.is_large_binary,
            pa.types.is_string,
            pa.types.is_large_string,
        )
    )


def check_part(part: Part, columns: Columns) -> None:
    """Fail fast, naming the file, when a column is missing or the image column holds no images."""
    missing = [c for c in columns.needed() if c not in part.schema.names]
    if missing:
        raise UnusableInput(
            f"{part.path}: no column {', '.join(map(repr, missing))}; its columns are {part.schema.names}; "
            "pass --preset or the --*-column options"
        )
    kind = part.schema.field(columns.image).type
    if not is_image_type(kind):
        raise UnusableInput(
            f"{part.path}: column {columns.image!r} holds {kind}, not images (an Image struct of bytes and "
            "path, binary, or path strings); pass --image-column"
        )


def part_batches(part: Part, columns: list[str]) -> Iterator[list[dict]]:
    """The rows of `columns`, a parquet row-group slice or an Arrow record batch at a time, so memory holds
    one batch and never the file; a file that breaks off (an interrupted download) is named.

    Each row group gets a reader of its own: one reader over the whole file kept Arrow memory growing with
    the file (pyarrow 26: 64 MB for 43 MB of images, 191 MB for 170 MB; per row group, 30 MB for both)."""
    try:
        if part.path.suffix == ARROW:
            with pa.memory_map(str(part.path)) as source:
                for batch in pa.ipc.open_stream(source):
                    yield batch.select(columns).to_pylist()
        else:
            with pq.ParquetFile(part.path) as parquet:
                for group in range(parquet.num_row_groups):
                    batches = parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=columns)
                    yield from (batch.to_pylist() for batch in batches)
    except (pa.ArrowException, OSError) as e:
        raise UnusableInput(f"{part.path}: unreadable part ({e}); download it again") from e


def json_value(value: object) -> object:
    """A cell as json holds it: NaN (a missing float) becomes null, dates and other types their text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


def cell_text(value: object) -> str:
    """A cell as the text json keys and product ids hold; null and NaN become ''."""
    value = json_value(value)
    return "" if value is None else str(value)


def row_captions(values: list[object]) -> tuple[str, ...]:
    """One column's caption(s) as given; several columns' values joined into one caption (iMaterialist's
    rows carry attributes but no text)."""
    texts = [caption_list(json_value(value)) for value in values]
    return clean_captions(texts[0] if len(texts) == 1 else [" ".join(t for text in texts for t in text)])


class RowProblem(Exception):
    """Why one row cannot become an item: a manifest reason and its detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def inside(path: str, root: Path) -> Path:
    """The file a relative image path names under `root`; the dataset is not ours to trust, so an absolute
    path, a `..`, a URL or a link leading out is refused."""
    if PurePosixPath(path).is_absolute():
        raise RowProblem(UNSAFE_PATH, f"{path!r} is absolute")
    parts = path.split("/")
    bad = next((part for part in parts if name_problem(part)), None)
    if bad is not None:
        raise RowProblem(UNSAFE_PATH, f"{path!r}: {bad!r} {name_problem(bad)}")
    file = root.joinpath(*parts)
    if not file.resolve().is_relative_to(root):
        raise RowProblem(UNSAFE_PATH, f"{path!r} leads out of {root} through a link")
    return file


def row_image(value: object, root: Path) -> bytes | Path:
    """The `Image` struct's bytes when it has them, else its path (inside `root` only)."""
    if not isinstance(value, dict):
        value = {"bytes": value} if isinstance(value, bytes) else {"path": value}
    if value.get("bytes"):
        return value["bytes"]
    if not value.get("path"):
        raise RowProblem(MISSING_IMAGE, "the row has no image bytes or path")
    return inside(value["path"], root)


def row_entry(index: int, name: str, values: dict, columns: Columns, root: Path) -> Entry:
    """One row as an item; the product falls back to the row's name so grouping never merges strangers."""
    try:
        image = row_image(values[columns.image], root)
    except RowProblem as e:
        return Rejected(index, name, e.reason, e.detail)
    captions = row_captions([values[c] for c in columns.caption])
    if not captions:
        return Rejected(index, name, EMPTY_CAPTION, f"{'+'.join(columns.caption)} is empty or missing")
    keys = {key: cell_text(values[column]) for key, column in columns.json_keys().items()}
    metadata = {c: json_value(values[c]) for c in columns.metadata} | keys
    product = cell_text(values[columns.id]) if columns.id else ""
    return CatalogueItem(index, name, image, captions, product or name, keys.get("category", ""), metadata)


class ParquetSource:
    """The input files, checked on open and read a batch at a time on each pass."""

    def __init__(self, parts: list[Part], columns: Columns, image_root: Path) -> None:
        for part in parts:
            check_part(part, columns)
        self.parts = parts
        self.columns = columns
        self.image_root = image_root.resolve()
        counts = [part.rows for part in parts]
        self.rows = None if None in counts else sum(counts)

    def _named_rows(self) -> Iterator[tuple[str, dict]]:
        """Each row with its name, `FILE:ROW`, so a skipped row can be found in its file."""
        needed = self.columns.needed()
        for part in self.parts:
            rows = (row for batch in part_batches(part, needed) for row in batch)
            yield from ((f"{part.label}:{n}", row) for n, row in enumerate(rows))

    def entries(self) -> Iterator[Entry]:
        """Every row of every file in order, numbered across files."""
        for index, (name, values) in enumerate(self._named_rows()):
            yield row_entry(index, name, values, self.columns, self.image_root)


def files_split(parts: Sequence[Part]) -> str | None:
    """The split all file names agree on (`train-00000-of-00002.parquet`), if any."""
    splits = {infer_split(part.path) for part in parts}
    return splits.pop() if len(splits) == 1 else None


def chosen_columns(args: argparse.Namespace) -> Columns:
    """The preset's columns (or the defaults) with each column option given on the command line."""
    given = {name: getattr(args, name) for name in COLUMN_OPTIONS if getattr(args, name) is not None}
    return replace(PRESETS[args.preset] if args.preset else Columns(), **given)


def _parser() -> argparse.ArgumentParser:
    """This tool's own options; the shard-writing ones are added by `parse`."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--parquet",
        type=Path,
        nargs="+",
        required=True,
        help="parquet or Arrow files, or folders searched for them (a hub download, a `datasets` cache)",
    )
    parser.add_argument(
        "--preset", type=preset_name, choices=sorted(PRESETS), help="the columns of one of Marqo's datasets"
    )
    for name, (flag, text) in COLUMN_OPTIONS.items():
        parser.add_argument(flag, dest=name, type=column_list if name in LIST_OPTIONS else str, help=text)
    parser.add_argument(
        "--image-root", type=Path, help="base of relative image paths (default: the folder given)"
    )
    return parser


def build(args: argparse.Namespace) -> tuple[list[SplitResult], list[str]]:
    """Check the columns and files, then stream the rows into the split(s)."""
    columns = chosen_columns(args)
    check_columns(columns)
    parts = [open_part(path, label) for given in args.parquet for path, label in part_files(given)]
    anchor = Path(os.path.commonpath([path.resolve() for path in args.parquet]))
    source = ParquetSource(parts, columns, args.image_root or (anchor if anchor.is_dir() else anchor.parent))
    identity = {
        "sources": [file_identity(part.path) for part in parts],
        "columns": asdict(columns),
        "image_root": str(source.image_root),
    }
    run = argparse.Namespace(
        **{
            **vars(args),
            "split": args.split or files_split(parts),
            "dataset_name": args.dataset_name or args.preset,
        }
    )
    mapped = "".join(f", {key} <- {column}" for key, column in columns.json_keys().items())
    note = f"columns: product <- {columns.id or '(row name)'}, caption <- {'+'.join(columns.caption)}{mapped}"
    return write_splits(source.entries, run, anchor, identity, source.rows), [note]


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; exit 0 if anything was written, 1 if nothing was, 2 if the input is unusable."""
    args = parse(_parser(), argv)
    return run_writer(lambda: build(args), PROG)


if __name__ == "__main__":
    raise SystemExit(main())
