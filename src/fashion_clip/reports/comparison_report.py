"""The comparison report of many runs: printed as tables and written as comparison.{md,csv,png}."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from fashion_clip.reports.attribute_table import fields_markdown
from fashion_clip.reports.comparison import ComparisonRow, columns, gather, row_metrics, to_csv, to_markdown
from fashion_clip.reports.comparison_chart import plot_comparison
from fashion_clip.reports.seed_summary import seeds_markdown, summarise_seeds
from fashion_clip.utils.atomic_output import atomic_output

REPORT_STEM = "comparison"


def print_rows(rows: list[ComparisonRow]) -> None:
    """The comparison as a terminal table."""
    metrics = row_metrics(rows)
    table = Table(title="Evaluation comparison")
    for column in columns(metrics):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row.cells(metrics))
    Console(width=220).print(table)


def write_report(rows: list[ComparisonRow], out_dir: str | Path) -> dict[str, Path]:
    """comparison.{md,csv,png} in `out_dir`, each written to a temp name and renamed; the markdown adds
    attribute search by field when a run has it and the mean over seeds when a configuration ran with
    several."""
    out = Path(out_dir)
    sections = [to_markdown(rows), fields_markdown(rows), seeds_markdown(summarise_seeds(rows))]
    markdown = "\n".join(section for section in sections if section)
    written = {}
    for suffix, text in ((".md", markdown), (".csv", to_csv(rows))):
        written[suffix] = out / f"{REPORT_STEM}{suffix}"
        with atomic_output(written[suffix]) as tmp:
            tmp.write_text(text)
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
