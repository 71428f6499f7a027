"""Comparison report: `python -m fashion_clip.report outputs/train/multiruns/...` -> table, CSV, bar chart."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from fashion_clip.errors import exit_on_user_error
from fashion_clip.records import RESULTS_NAME

log = logging.getLogger(__name__)


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
    # matplotlib is imported with the report, not when Hydra builds the callback below at a sweep's start
    from fashion_clip.reports.comparison import report

    args = parse_args(argv)
    report(args.paths, args.out)


class ComparisonReport(Callback):
    """Hydra callback (conf/hydra/default.yaml): when a multirun ends, gather its runs' evaluation results
    into one comparison report, comparison.{md,csv,png} in the sweep directory, so a study ends with its
    table."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # matplotlib is only needed when a sweep ends
        from fashion_clip.reports.comparison import report

        sweep_dir = Path(config.hydra.sweep.dir)
        if not any(sweep_dir.rglob(RESULTS_NAME)):
            log.warning("no %s under %s: nothing to compare", RESULTS_NAME, sweep_dir)
            return
        report([sweep_dir])


if __name__ == "__main__":
    main()
