"""Comparison report: `python -m fashion_clip.report outputs/multirun/...` -> table, CSV and bar chart."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fashion_clip.errors import exit_on_user_error
from fashion_clip.evaluation.attribute_table import fields_markdown
from fashion_clip.evaluation.comparison import ComparisonRow, columns, gather, to_csv, to_markdown
from fashion_clip.evaluation.comparison_chart import plot_comparison
from fashion_clip.evaluation.seed_summary import seeds_markdown, summarise_seeds

REPORT_STEM = "comparison"


def print_rows(rows: list[ComparisonRow]) -> None:
    """The comparison as a terminal table."""
    table = Table(title="Evaluation comparison")
    for column in columns():
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row.cells())
    Console(width=220).print(table)


def write_report(rows: list[ComparisonRow], out_dir: str | Path) -> dict[str, Path]:
    """comparison.{md,csv,png} in `out_dir`, each written to a temp name and renamed; the markdown adds
    attribute search by field when a run has it and the mean over seeds when a configuration ran with
    several."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    sections = [to_markdown(rows), fields_markdown(rows), seeds_markdown(summarise_seeds(rows))]
    markdown = "\n".join(section for section in sections if section)
    for suffix, text in ((".md", markdown), (".csv", to_csv(rows))):
        tmp = out / f".{REPORT_STEM}{suffix}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / f"{REPORT_STEM}{suffix}")
        written[suffix] = out / f"{REPORT_STEM}{suffix}"
    written[".png"] = plot_comparison(rows, out / f"{REPORT_STEM}.png")
    return written


def report(paths: list[str | Path], out_dir: str | Path | None = None) -> dict[str, Path]:
    """Gather, print and write; the default output is the first directory given."""
    rows = gather(paths)
    print_rows(rows)
    for section in (fields_markdown(rows), seeds_markdown(summarise_seeds(rows))):
        if section:
            Console(width=220).print(section, markup=False)
    first = Path(paths[0])
    written = write_report(rows, out_dir or (first if first.is_dir() else first.parent))
    Console().print(f"wrote {', '.join(str(p) for p in written.values())}")
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "paths", nargs="+", help="run or sweep directories (searched recursively) or results files"
    )
    parser.add_argument("--out", help="directory for comparison.{md,csv,png} (default: the first path)")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Console entry point (`fashion-clip-report`)."""
    args = parse_args(argv)
    report(args.paths, args.out)


if __name__ == "__main__":
    main()
