"""Hyperparameter search entry point: `python -m fashion_clip.tune hparams_search=optuna model=vitb32`.

Checks the config and the search space's extremes as `train` would, then runs trials of `train` until the
study holds `hparams_search.n_trials` finished ones; the study lives in a database, so the same command
after a crash continues it. Sweep `hparams_search.worker=0,1,...` with `-m` (and a submitit launcher) to
run several workers on one study.
"""

from __future__ import annotations

from fashion_clip.config import hydra_entry

main = hydra_entry("train", "fashion_clip.tuning.run.tune", job_name="tune")

if __name__ == "__main__":
    main()
