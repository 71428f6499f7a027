"""A hyperparameter search run: the config and the space's extremes checked, then trials of `train` until the
study holds `hparams_search.n_trials` finished ones, then the best-trial table, CSV, plots and comparison."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from fashion_clip.errors import ConfigError, UserError
from fashion_clip.records import RESULTS_NAME
from fashion_clip.reports.comparison import report
from fashion_clip.training import train
from fashion_clip.tuning.objective import SearchStopped, listed, make_objective
from fashion_clip.tuning.search_space import search_space
from fashion_clip.tuning.space_preflight import preflight_search
from fashion_clip.tuning.study import counted_trials, open_study, stop_at
from fashion_clip.tuning.study_report import write_study_report

log = logging.getLogger(__name__)


def stopped_message(stop: SearchStopped) -> str:
    """What to do after a user's mistake ended a trial: it is not counted, so the same command reruns it."""
    return (
        f"trial {stop.number} ({listed(stop.values)}) stopped the search: {str(stop.error).rstrip('.')}. "
        "The trial does not count towards hparams_search.n_trials: fix the config or hparams_search.params "
        "and run the same command again."
    )


def run_trials(
    study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int, callbacks: Sequence
) -> None:
    """Optuna's loop: a crash fails its trial and the search goes on; a user's mistake closes its trial as
    failed, marked so it is not counted, and stops the search with the message."""
    try:
        study.optimize(
            objective, n_trials=n_trials, catch=(Exception,), callbacks=list(callbacks), gc_after_trial=True
        )
    except SearchStopped as stop:
        study.tell(stop.number, state=TrialState.FAIL, skip_if_finished=True)
        raise UserError(stopped_message(stop)) from stop.error


def tune(cfg: DictConfig, callbacks: tuple = ()) -> optuna.Study:
    """Check the config and the space's extremes, open the study, run the trials it still lacks, and write
    the best-trial table, CSV and plots."""
    search = cfg.get("hparams_search")
    if not search:
        raise ConfigError("hparams_search is not set: pass hparams_search=optuna (conf/hparams_search/)")
    space = search_space(search.params, cfg)
    preflight_search(cfg, space)
    study = open_study(search, cfg)
    out_dir = Path(cfg.paths.output_dir)
    remaining = max(0, search.n_trials - counted_trials(study))
    log.info(
        "study %r: %d of %d trials finished", study.study_name, search.n_trials - remaining, search.n_trials
    )
    if remaining:
        objective = make_objective(cfg, space, out_dir, train)
        run_trials(study, objective, remaining, (stop_at(search.n_trials), *callbacks))
    write_study_report(study, search.monitor, out_dir)
    runs = sorted(p.parent for p in out_dir.glob(f"trial_*/{RESULTS_NAME}"))
    if runs:
        report(runs, out_dir)
    return study
