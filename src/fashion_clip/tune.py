"""Hyperparameter search entry point: `python -m fashion_clip.tune hparams_search=optuna model=vitb32`.

Runs trials of `train` until the study holds `hparams_search.n_trials` finished ones; the study lives in a
database, so the same command after a crash continues it. Sweep `hparams_search.worker=0,1,...` with
`-m` (and a submitit launcher) to run several workers on one study.
"""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from fashion_clip.config import hydra_entry
from fashion_clip.errors import ConfigError
from fashion_clip.reports.comparison_report import report
from fashion_clip.reports.results_file import RESULTS_NAME
from fashion_clip.training import train
from fashion_clip.tuning.objective import make_objective
from fashion_clip.tuning.search_space import search_space
from fashion_clip.tuning.study import FINISHED, finished_trials, open_study
from fashion_clip.tuning.study_report import write_study_report

log = logging.getLogger(__name__)


def tune(cfg: DictConfig, callbacks: tuple = ()) -> optuna.Study:
    """Open the study, run the trials it still lacks, and write the best-trial table, CSV and plots."""
    search = cfg.get("hparams_search")
    if not search:
        raise ConfigError("hparams_search is not set: pass hparams_search=optuna (conf/hparams_search/)")
    space = search_space(search.params, cfg)
    study = open_study(search, cfg)
    out_dir = Path(cfg.paths.output_dir)
    remaining = max(0, search.n_trials - finished_trials(study))
    log.info(
        "study %r: %d of %d trials finished", study.study_name, search.n_trials - remaining, search.n_trials
    )
    if remaining:
        study.optimize(
            make_objective(cfg, space, out_dir, train),
            n_trials=remaining,
            catch=(Exception,),
            # running trials count too, so parallel workers stop together at n_trials
            callbacks=[
                MaxTrialsCallback(search.n_trials, states=(*FINISHED, TrialState.RUNNING)),
                *callbacks,
            ],
            gc_after_trial=True,
        )
    write_study_report(study, search.monitor, out_dir)
    runs = sorted(p.parent for p in out_dir.glob(f"trial_*/{RESULTS_NAME}"))
    if runs:
        report(runs, out_dir)
    return study


main = hydra_entry("train", tune, job_name="tune")

if __name__ == "__main__":
    main()
