"""`fashion_clip.tune`: an Optuna study in SQLite that a re-run continues, and failed trials recorded
(a user's mistake stops the search instead: test_tune_errors.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
import pytest
from helpers.python_subprocess import run_python
from helpers.tune_overrides import SEARCH
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import TrialState

from fashion_clip.errors import ConfigError
from fashion_clip.tuning.run import tune
from fashion_clip.tuning.search_space import search_space


def stop_after_first_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """What a killed job leaves: one finished trial, the rest never started."""
    study.stop()


@pytest.mark.slow
def test_a_rerun_continues_the_study_without_repeating_a_trial(compose_train, small_catalogue, tmp_path):
    cfg = compose_train(*SEARCH, "hparams_search.n_trials=3", data_dir=small_catalogue)
    first = tune(cfg, callbacks=(stop_after_first_trial,))
    assert [t.state for t in first.trials] == [TrialState.COMPLETE]
    done = first.trials[0]
    assert (tmp_path / "outputs" / "train" / "optuna.db").is_file()  # the default storage, by task name

    study = tune(compose_train(*SEARCH, "hparams_search.n_trials=3", data_dir=small_catalogue))
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE and 0.0 <= t.value <= 1.0 for t in trials)
    assert (trials[0].params, trials[0].datetime_complete) == (done.params, done.datetime_complete)
    assert len({t.params["lr"] for t in trials}) == 3

    out = Path(cfg.paths.output_dir)
    with (out / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["number"], r["state"]) for r in rows] == [
        ("0", "COMPLETE"),
        ("1", "COMPLETE"),
        ("2", "COMPLETE"),
    ]
    assert float(rows[1]["lr"]) == pytest.approx(trials[1].params["lr"])
    for plot in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (out / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.glob("trial_*")) == ["trial_000", "trial_001", "trial_002"]

    again = tune(compose_train(*SEARCH, "hparams_search.n_trials=3", data_dir=small_catalogue))
    assert len(again.trials) == 3  # a finished study runs nothing more


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_search_goes_on(compose_train, small_catalogue):
    cfg = compose_train(
        *SEARCH,
        "+trainer.limit_val_batches=1.0",
        "hparams_search.n_trials=2",
        "hparams_search.sampler._target_=optuna.samplers.BruteForceSampler",
        data_dir=small_catalogue,
    )
    with open_dict(cfg):  # without validation no checkpoint is scored: that trial fails, not the search
        cfg.hparams_search.params = {
            "val_batches": {"key": "trainer.limit_val_batches", "type": "categorical", "choices": [1.0, 0]}
        }
    study = tune(cfg)
    states = {t.params["val_batches"]: t.state for t in study.trials}
    assert states == {1.0: TrialState.COMPLETE, 0: TrialState.FAIL}
    with (Path(cfg.paths.output_dir) / "trials.csv").open() as f:
        assert sorted(r["state"] for r in csv.DictReader(f)) == ["COMPLETE", "FAIL"]


@pytest.mark.slow
def test_parallel_workers_share_one_study(small_catalogue: Path, tmp_path: Path) -> None:
    """Two submitit_local jobs (the -m sweep over hparams_search.worker) on one SQLite study."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    done = run_python(
        "-m",
        "fashion_clip.tune",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        *SEARCH,
        "hparams_search.n_trials=2",
        "hparams_search.worker=0,1",
        f"hparams_search.storage={storage}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "hydra.sweep.subdir=${hydra.job.num}",
        f"paths.data_dir={small_catalogue}",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="train", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].params["lr"] != trials[1].params["lr"]  # each worker's sampler has its own seed
    assert sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/trials.csv")) == ["0", "1"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lr": {"key": "optimizer.lr", "type": "loguniform", "low": 1, "high": 2}}, "type='loguniform'"),
        ({"lr": {"key": "optimizer.lr", "type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
        (
            {"lr": {"key": "optimizer.learning_rate", "type": "float", "low": 0, "high": 1}},
            "optimizer.learning_rate",
        ),
        ({"b": {"key": "data.batch_size", "type": "categorical", "choices": []}}, "choices is empty"),
    ],
)
def test_a_bad_search_space_names_the_key(params: dict, message: str) -> None:
    cfg = OmegaConf.create({"optimizer": {"lr": 1.0e-3}, "data": {"batch_size": 4}})
    with pytest.raises(ConfigError, match=message):
        search_space(OmegaConf.create(params), cfg)


def test_optional_params_are_left_out_where_the_loss_has_no_such_key() -> None:
    params = OmegaConf.create(
        {
            "lr": {"key": "optimizer.lr", "type": "float", "low": 1e-6, "high": 1e-3, "log": True},
            "scale": {"key": "loss.init_logit_scale", "type": "float", "low": 1, "high": 4, "optional": True},
        }
    )
    infonce: DictConfig = OmegaConf.create({"optimizer": {"lr": 1e-3}, "loss": {"positives": "pair"}})
    siglip: DictConfig = OmegaConf.create({"optimizer": {"lr": 1e-3}, "loss": {"init_logit_scale": 2.3}})
    assert [p.name for p in search_space(params, infonce)] == ["lr"]
    assert [p.name for p in search_space(params, siglip)] == ["lr", "scale"]
