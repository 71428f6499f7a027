"""Hydra callback: when a multirun ends, gather its runs' evaluation results into one comparison report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from fashion_clip.reports.results_file import RESULTS_NAME

log = logging.getLogger(__name__)


class ComparisonReport(Callback):
    """Write comparison.{md,csv,png} into the sweep directory, so a study ends with its table."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # matplotlib is only needed when a sweep ends
        from fashion_clip.reports.comparison_report import report

        sweep_dir = Path(config.hydra.sweep.dir)
        if not any(sweep_dir.rglob(RESULTS_NAME)):
            log.warning("no %s under %s: nothing to compare", RESULTS_NAME, sweep_dir)
            return
        report([sweep_dir])
