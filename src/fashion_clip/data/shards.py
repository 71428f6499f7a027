"""`python -m fashion_clip.data.shards`: a JSON / JSONL image-caption mapping to validated shards."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from fashion_clip.data.json_mapping import (
    MappingError,
    MappingKeys,
    check_keys,
    mapping_entries,
    read_records,
)
from fashion_clip.data.shard_journal import file_identity
from fashion_clip.data.split_writer import SplitResult
from fashion_clip.data.writer_cli import UnusableInput, parse, run_writer, write_splits

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
