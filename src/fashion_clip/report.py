"""Comparison report: `python -m fashion_clip.report outputs/train/multiruns/...` -> table, CSV, bar chart."""

from __future__ import annotations

import argparse

from fashion_clip.errors import exit_on_user_error
from fashion_clip.reports.comparison_report import report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The runs to compare and where the report goes."""
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
