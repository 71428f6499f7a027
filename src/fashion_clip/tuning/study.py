"""The Optuna study in a database, named stably, so re-running the same command continues it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, OperationalError

from fashion_clip.tuning.objective import USER_ERROR
from fashion_clip.utils.launch import from_launch_dir

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# workers' seeds lie this far apart, so no worker's seed is another's after some trials
SEED_STRIDE = 100_000


def storage_url(search: DictConfig, cfg: DictConfig) -> str:
    """`hparams_search.storage`, else a SQLite file under `<paths.log_dir>/<task_name>/` of the launch dir."""
    if search.get("storage"):
        return str(search.storage)
    path = from_launch_dir(cfg.paths.root_dir, str(Path(cfg.paths.log_dir) / cfg.task_name / "optuna.db"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def connect(url: str, attempts: int = 5, **options: Any) -> RDBStorage:
    """The storage, retried: workers started together race to create the schema and all but one lose."""
    for attempt in range(attempts - 1):
        try:
            return RDBStorage(url, **options)
        except (IntegrityError, OperationalError):
            time.sleep(1 + attempt)
    return RDBStorage(url, **options)


def open_study(search: DictConfig, cfg: DictConfig) -> optuna.Study:
    """Create the study or load it; trials of a dead worker fail after the grace period and run again."""
    storage = connect(
        storage_url(search, cfg),
        heartbeat_interval=search.heartbeat_interval,
        grace_period=search.grace_period,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
    )
    study = optuna.create_study(
        study_name=search.study_name, storage=storage, direction=search.direction, load_if_exists=True
    )
    study.sampler = instantiate(sampler_config(search, len(study.trials)))
    return study


def sampler_config(search: DictConfig, started: int) -> dict:
    """The sampler with its seed offset by the worker and the trials the study already has: a resumed
    or parallel worker would otherwise draw the very values the first one drew (deterministic still)."""
    sampler = dict(search.sampler)
    if sampler.get("seed") is not None:
        sampler["seed"] = int(sampler["seed"]) + SEED_STRIDE * int(search.worker) + started
    return sampler


def counted_trials(study: optuna.Study, states: tuple[TrialState, ...] = FINISHED) -> int:
    """Trials counted towards `n_trials`: completed, failed or pruned (a failure is not retried forever),
    less those a user's mistake ended, so the corrected command still runs the whole search."""
    trials = study.get_trials(deepcopy=False, states=states)
    return sum(USER_ERROR not in trial.user_attrs for trial in trials)


def stop_at(n_trials: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    """A callback that stops the worker once the study counts `n_trials`, running ones included, so
    parallel workers stop together (Optuna's MaxTrialsCallback would count the user's mistakes too)."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if counted_trials(study, (*FINISHED, TrialState.RUNNING)) >= n_trials:
            study.stop()

    return callback
