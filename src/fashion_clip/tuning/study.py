"""The Optuna study in a database, named stably, so re-running the same command continues it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError

from fashion_clip.utils.launch_dir import from_launch_dir

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


def finished_trials(study: optuna.Study) -> int:
    """Trials counted towards `n_trials`: completed, failed or pruned (a failure is not retried forever)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))
