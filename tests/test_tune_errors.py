"""`fashion_clip.tune` fails fast: a config mistake, or one at the search space's extremes, stops before the
first trial (exit 2, no trial stored); a user's mistake inside a trial stops the search without counting the
trial; a crash still fails its trial and the search goes on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from helpers.entry_in_process import run_entry
from helpers.tune_overrides import SEARCH
from omegaconf import OmegaConf
from optuna.trial import TrialState

from fashion_clip.errors import ConfigError, UserError
from fashion_clip.tuning.objective import USER_ERROR
from fashion_clip.tuning.run import tune
from fashion_clip.tuning.search_space import search_space
from fashion_clip.tuning.space_preflight import extreme_points
from fashion_clip.tuning.study import counted_trials

DB = Path("outputs") / "train" / "optuna.db"  # the default storage, under the launch dir
DIVISIBLE = "data.batch_size=16 is not divisible by module.accumulate=3"


def scripted_train(*errors: Exception | None) -> Callable:
    """A stand-in for `train`: each call raises the next scripted error, or scores 0.5 once none is left."""
    script = iter(errors)

    def train(cfg, extra_callbacks=()) -> dict:
        error = next(script, None)
        if error is not None:
            raise error
        extra_callbacks[0].value = 0.5  # the BestScore callback, as fitting would leave it
        return {}

    return train


@pytest.fixture
def no_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave out the table, CSV and plots (seconds of matplotlib) where only the trials' states matter."""
    monkeypatch.setattr("fashion_clip.tuning.run.write_study_report", lambda *args: {})


def test_extreme_points_name_each_end_then_both_corners() -> None:
    params = OmegaConf.create(
        {
            "lr": {"key": "optimizer.lr", "type": "float", "low": 0, "high": 1e-3},
            "bs": {"key": "data.batch_size", "type": "categorical", "choices": [8, 16, 32]},
            "warmup": {"key": "scheduler.warmup_steps", "type": "int", "low": 1.0, "high": 10},
        }
    )
    cfg = OmegaConf.create(
        {"optimizer": {"lr": 1}, "data": {"batch_size": 4}, "scheduler": {"warmup_steps": 0}}
    )
    points = extreme_points(search_space(params, cfg))
    assert [values for _, values in points] == [
        {"optimizer.lr": 0.0},
        {"optimizer.lr": 1e-3},
        {"data.batch_size": 8},
        {"data.batch_size": 16},
        {"data.batch_size": 32},
        {"scheduler.warmup_steps": 1},
        {"scheduler.warmup_steps": 10},
        {"optimizer.lr": 0.0, "data.batch_size": 8, "scheduler.warmup_steps": 1},
        {"optimizer.lr": 1e-3, "data.batch_size": 32, "scheduler.warmup_steps": 10},
    ]
    assert points[0][0] == "hparams_search.params.lr.low=0.0 (sets optimizer.lr)"
    assert points[3][0] == "hparams_search.params.bs.choices[1]=16 (sets data.batch_size)"
    assert type(points[5][1]["scheduler.warmup_steps"]) is int  # typed as the trial would suggest it


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["hparams_search.params.lr.log=false", "hparams_search.params.lr.low=0"],
            "lr.low=0.0 (sets optimizer.lr)",
        ),
        (
            ["+hparams_search.params.bs={key:data.batch_size,type:categorical,choices:[16,0]}"],
            "bs.choices[1]=0",
        ),
        (
            ["+hparams_search.params.workers={key:data.num_workers,type:int,low:-1,high:0}"],
            "data.num_workers=-1",
        ),
    ],
)
def test_an_invalid_extreme_stops_before_the_study_opens(
    overrides: list[str], message: str, compose_train, small_catalogue: Path, tmp_path: Path
) -> None:
    cfg = compose_train(*SEARCH, *overrides, data_dir=small_catalogue)
    with pytest.raises(ConfigError, match="the search space reaches a config that train refuses") as refused:
        tune(cfg)
    assert message in str(refused.value) and "is out of range" in str(refused.value)
    assert not (tmp_path / DB).exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.batch_size=0"], "data.batch_size=0 is out of range"),
        (
            ["hparams_search.params.lr.log=false", "hparams_search.params.lr.low=0"],
            "hparams_search.params.lr.low=0.0 (sets optimizer.lr): optimizer.lr=0.0 is out of range",
        ),
    ],
    ids=["config", "search-space-extreme"],
)
@pytest.mark.slow
def test_the_cli_exits_2_before_any_trial(
    overrides: list[str], message: str, small_catalogue: Path, tmp_path: Path
) -> None:
    done = run_entry(
        "tune",
        *SEARCH,
        *overrides,
        f"paths.data_dir={small_catalogue}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / DB).exists()  # no study, so no trial: the corrected command starts afresh


def test_a_user_error_in_a_trial_stops_the_search_and_is_not_counted(
    no_report, compose_train, small_catalogue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = (*SEARCH, "hparams_search.n_trials=2")
    monkeypatch.setattr("fashion_clip.tuning.run.train", scripted_train(ConfigError(DIVISIBLE + ".")))
    with pytest.raises(
        UserError, match=r"trial 0 \(optimizer.lr=.*\) stopped the search: " + DIVISIBLE
    ) as stop:
        tune(compose_train(*overrides, data_dir=small_catalogue))
    assert "does not count towards hparams_search.n_trials" in str(stop.value)
    study = optuna.load_study(study_name="train", storage=f"sqlite:///{tmp_path / DB}")
    [trial] = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs[USER_ERROR] == DIVISIBLE + "."
    assert counted_trials(study) == 0

    monkeypatch.setattr("fashion_clip.tuning.run.train", scripted_train())  # the config fixed
    study = tune(compose_train(*overrides, data_dir=small_catalogue))
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert counted_trials(study) == 2  # n_trials reached: the same command runs nothing more


def test_a_crash_in_a_trial_is_counted_as_failed_and_the_search_goes_on(
    no_report, compose_train, small_catalogue: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = (*SEARCH, "hparams_search.n_trials=2")
    monkeypatch.setattr("fashion_clip.tuning.run.train", scripted_train(RuntimeError("CUDA out of memory")))
    study = tune(compose_train(*overrides, data_dir=small_catalogue))
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert USER_ERROR not in study.trials[0].user_attrs
    assert counted_trials(study) == 2  # the failure counts: a crash is not retried forever


@pytest.mark.slow
def test_a_user_error_in_a_trial_exits_2_and_the_fixed_rerun_runs_every_trial(
    small_catalogue: Path, tmp_path: Path
) -> None:
    """The LoRA target is only checked against the built model, so the trial, not the pre-flight, finds it."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def run_tune(target: str):
        return run_entry(
            "tune",
            *SEARCH,
            "hparams_search.n_trials=2",
            f"hparams_search.storage={storage}",
            "+hparams_search.params.lora={key:model.lora.enabled,type:categorical,choices:[true]}",
            f"model.lora.targets=[{target}]",
            f"paths.data_dir={small_catalogue}",
            f"hydra.run.dir={tmp_path / target}",
            cwd=tmp_path,
        )

    done = run_tune("nope")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "trial 0 (" in done.stderr and "'nope' matches no module" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    [trial] = optuna.load_study(study_name="train", storage=storage).trials
    assert trial.state == TrialState.FAIL and "'nope'" in trial.user_attrs[USER_ERROR]

    done = run_tune("attn")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="train", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
