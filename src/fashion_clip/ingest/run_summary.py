"""The end-of-run report: what was written, what was skipped and why, and the exit code that follows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from fashion_clip.data.manifest import MANIFEST_NAME
from fashion_clip.ingest.split_writer import SplitResult

EXIT_OK = 0
EXIT_NOTHING_WRITTEN = 1
EXIT_UNUSABLE_INPUT = 2


def print_line(console: Console, text: str) -> None:
    """Print verbatim and unwrapped: paths and brace patterns are copied from here into configs."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def written_table(results: Sequence[SplitResult]) -> Table:
    """One row per split: a user checks sample counts and locations here before training."""
    table = Table(title="Written")
    for column in ("split", "shards", "samples", "skipped", "note"):
        table.add_column(column, justify="right" if column in ("shards", "samples", "skipped") else "left")
    for r in results:
        notes = [f"resumed {r.resumed_shards} shards"] if r.resumed_shards else []
        notes += ["stopped at --max-shards"] if r.truncated else []
        table.add_row(
            r.split,
            str(len(r.manifest.shards)),
            str(r.manifest.num_samples),
            str(len(r.manifest.skipped)),
            "; ".join(notes),
        )
    return table


def skipped_table(skipped: Sequence[dict]) -> Table:
    """Skip counts by reason with one example each, so a systematic problem is visible at a glance."""
    counts = Counter((record["split"], record["reason"]) for record in skipped)
    examples = {(record["split"], record["reason"]): record for record in reversed(skipped)}
    table = Table(title="Skipped")
    for column in ("split", "reason", "count", "example"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for (where, reason), count in sorted(counts.items()):
        example = examples[(where, reason)]
        table.add_row(where, reason, str(count), f"{example['item']}: {example['detail']}".strip(": "))
    return table


def print_summary(
    results: Sequence[SplitResult], notes: Sequence[str] = (), console: Console | None = None
) -> None:
    """Tables, then the shard patterns, then notes such as encoding fallbacks, in that reading order."""
    console = console or Console()
    console.print(written_table(results))
    skipped = [{**record, "split": r.split} for r in results for record in r.manifest.skipped]
    if skipped:
        console.print(skipped_table(skipped))
    for r in results:
        console.print(
            f"{r.split}: {r.directory / MANIFEST_NAME}", highlight=False, markup=False, soft_wrap=True
        )
        console.print(
            f"Shard pattern: {r.manifest.pattern or '(no shards)'}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    for note in notes:
        print_line(console, note)


def exit_code(results: Sequence[SplitResult]) -> int:
    """Non-zero only when no split got a single sample: partial skips are reported, not failures."""
    return EXIT_OK if any(r.manifest.num_samples for r in results) else EXIT_NOTHING_WRITTEN
