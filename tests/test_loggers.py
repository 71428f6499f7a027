"""`logger=[...]`: one tiny run logged to TensorBoard, CSV, MLflow and W&B at once, each read back with its
own reader (csv, MLflow's client, W&B's offline run files)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb
import yaml
from helpers.train_overrides import TINY_ON_CPU
from mlflow.tracking import MlflowClient

from fashion_clip.errors import ConfigError
from fashion_clip.preflight import check_loggers
from fashion_clip.training import train

STEPS = 2
BEFORE_AFTER = ("recall_before_after.md", "recall_before_after.json")


@pytest.fixture
def offline_wandb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No W&B server can be reached (a closed local port), and the run is finished after the test."""
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    yield
    wandb.finish()
    wandb.teardown()


def csv_metrics(path: Path) -> dict[str, dict[int, float]]:
    """metrics.csv as {metric: {step: value}} (a row per step and logging call; empty cells skipped)."""
    metrics: dict[str, dict[int, float]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if name not in ("step", "epoch") and value:
                    metrics.setdefault(name, {})[int(row["step"])] = float(value)
    return metrics


def mlflow_metric(client: MlflowClient, run_id: str, name: str) -> dict[int, float]:
    """One metric's history as {step: value}."""
    return {m.step: m.value for m in client.get_metric_history(run_id, name)}


@pytest.mark.slow
def test_one_run_logs_to_every_logger_and_each_reads_back(
    compose_train, small_catalogue, tmp_path, offline_wandb
) -> None:
    cfg = compose_train(
        *TINY_ON_CPU,
        "logger=[tensorboard,csv,mlflow,wandb]",
        f"trainer.max_steps={STEPS}",
        f"trainer.val_check_interval={STEPS}",
        "+trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "~callbacks.periodic_checkpoint",
        data_dir=small_catalogue,
    )
    results = train(cfg)
    before, after = results["before"]["full/mean_recall"], results["after"]["full/mean_recall"]
    run_dir = tmp_path / "run"
    wandb.finish()  # flushes the offline run file (at the process's exit outside a test)

    by_csv = csv_metrics(run_dir / "csv" / "metrics.csv")
    assert by_csv["test/full/mean_recall"] == {0: pytest.approx(before), STEPS: pytest.approx(after)}
    assert sorted(by_csv["train/loss"]) == list(range(STEPS))
    assert (
        yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())["model"]["name"] == "FashionCLIP-Tiny"
    )

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert mlflow_metric(client, run_id, "test/full/mean_recall") == by_csv["test/full/mean_recall"]
    assert mlflow_metric(client, run_id, "train/loss") == pytest.approx(by_csv["train/loss"], rel=1e-6)
    assert mlflow_metric(client, run_id, "val/mean_recall") == pytest.approx(by_csv["val/mean_recall"])
    assert run.data.params["model/name"] == "FashionCLIP-Tiny"
    assert float(run.data.params["optimizer/lr"]) == cfg.optimizer.lr
    assert {a.path for a in client.list_artifacts(run_id)} >= set(BEFORE_AFTER)
    for name in BEFORE_AFTER:
        saved = Path(client.download_artifacts(run_id, name, str(tmp_path)))
        assert saved.read_text() == (run_dir / name).read_text()

    # offline, W&B keeps history and config in its binary run file (its reader left the public API): the
    # metric's name and value are in it, and the table is a plain file beside it
    [offline_run] = (run_dir / "wandb").glob("offline-run-*")
    records = next(offline_run.glob("run-*.wandb")).read_bytes()
    assert b"test/full/mean_recall" in records and json.dumps(after).encode() in records
    [table] = (offline_run / "files" / "media" / "table").glob("recall_before_after_*.table.json")
    rows = json.loads(table.read_text())
    assert rows["columns"] == ["protocol", "metric", "before", "after", "gain"]
    assert ["full", "mean_recall", f"{before:.4f}", f"{after:.4f}"] in [row[:4] for row in rows["data"]]

    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("logger", "key", "where"),
    [
        ("csv", "save_dir", "{run}/csv"),
        ("mlflow", "tracking_uri", "sqlite:///{run}/mlflow.db"),
        ("mlflow", "artifact_location", "{run}/mlflow_artifacts"),
        ("wandb", "save_dir", "{run}"),
    ],
)
def test_logger_presets_write_under_the_run_dir(compose_train, logger: str, key: str, where: str) -> None:
    cfg = compose_train(f"logger=[tensorboard,{logger}]")
    assert list(cfg.logger) == ["tensorboard", logger]
    assert cfg.logger[logger][key] == where.format(run=cfg.paths.output_dir)


def test_wandb_preset_is_offline(compose_train) -> None:
    assert compose_train("logger=wandb").logger.wandb.offline is True


def test_a_logger_whose_library_is_missing_is_named_with_the_extra(compose_train, monkeypatch) -> None:
    cfg = compose_train("logger=[tensorboard,mlflow]")
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)
    with pytest.raises(
        ConfigError, match=r"logger=mlflow needs the mlflow package.*fashion-clip\[tracking\]"
    ):
        check_loggers(cfg)
