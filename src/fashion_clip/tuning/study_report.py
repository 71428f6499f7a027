"""What a search leaves behind: the best trial as a table, every trial as CSV, and Optuna's plots as PNG."""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from fashion_clip.utils.files import atomic_output  # noqa: E402

log = logging.getLogger(__name__)

TRIALS_NAME = "trials.csv"
PLOTS: dict[str, Callable[[optuna.Study], object]] = {
    "optimization_history": optuna_plots.plot_optimization_history,
    "param_importances": optuna_plots.plot_param_importances,
    "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
}


def print_best(study: optuna.Study, monitor: str) -> None:
    """The best trial's value and parameters, the first thing a user wants after a search."""
    table = Table(title=f"best of {len(study.trials)} trials in study {study.study_name!r}")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    best = study.best_trial
    table.add_row(f"trial ({monitor})", f"{best.number} ({best.value:.4f})")
    for name, value in best.params.items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    Console().print(table)


def write_trials(study: optuna.Study, out: Path) -> Path:
    """Every trial with its state, value, parameters and duration, one row each (failed ones included)."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for trial in trials for name in trial.params})
    with atomic_output(out / TRIALS_NAME) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", *names, "seconds"])
        for t in trials:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
            value = "" if t.value is None else t.value
            writer.writerow([t.number, t.state.name, value, *(t.params.get(n, "") for n in names), seconds])
    return out / TRIALS_NAME


def write_plots(study: optuna.Study, out: Path) -> list[Path]:
    """Optuna's matplotlib plots; one that needs more completed trials than there are is skipped, said."""
    written = []
    for name, plot in PLOTS.items():
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental, on every call
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot(study)
        except (ValueError, RuntimeError) as err:
            log.warning("no %s plot: %s", name, err)
            continue
        with atomic_output(out / f"{name}.png") as tmp:
            axes.figure.savefig(tmp, format="png", bbox_inches="tight")
        plt.close(axes.figure)
        written.append(out / f"{name}.png")
    return written


def write_study_report(study: optuna.Study, monitor: str, out: Path) -> dict[str, Path]:
    """Table, CSV and plots in `out`; the table only once a trial has completed."""
    out.mkdir(parents=True, exist_ok=True)
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print_best(study, monitor)
    written = {"trials": write_trials(study, out)}
    written |= {path.stem: path for path in write_plots(study, out)}
    return written
