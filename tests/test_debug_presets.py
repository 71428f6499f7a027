"""`debug=fdr|overfit|limit|profiler` through the train entry point, early stopping on a metric that cannot
improve, and the composed config printed as a tree when an entry point starts."""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import pytest
from helpers.entry_in_process import run_entry
from helpers.train_overrides import TINY_ON_CPU
from omegaconf import open_dict

from fashion_clip.errors import ConfigError
from fashion_clip.models.checkpoint import read_checkpoint
from fashion_clip.preflight import check_numbers
from fashion_clip.training import train
from fashion_clip.utils.config_tree import print_config_tree


def last_step(run: Path) -> int:
    """The optimizer steps the run took, from its last checkpoint."""
    return read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]


def check_fdr(run: Path) -> None:
    assert last_step(run) == 1  # Lightning still writes last.ckpt at the end, but no best checkpoint
    assert not list((run / "checkpoints").glob("best-*")) and not (run / "tensorboard").exists()
    assert not (run / "recall_before_after.md").exists()


def check_overfit(run: Path) -> None:
    assert last_step(run) == 4  # 2 epochs of 2 batches


def check_limit(run: Path) -> None:
    assert last_step(run) == 2  # one epoch of 2 batches, then the test split scored before and after
    assert "| full | mean_recall |" in (run / "recall_before_after.md").read_text()


def check_profiler(run: Path) -> None:
    rows = {
        cells[0]: cells[1:]
        for line in (run / "profiler" / "fit-profile.txt").read_text().splitlines()
        if (cells := [cell.strip() for cell in line.strip("|").split("|")]) and len(cells) == 5
    }
    assert rows["run_training_batch"][1] == "2"  # calls: the 2 limited batches
    assert (
        "[Strategy]SingleDeviceStrategy.training_step" in rows
        and "[_TrainingEpochLoop].train_dataloader_next" in rows
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "overrides", "check", "shown"),
    [
        ("fdr", (), check_fdr, "fast_dev_run: true"),
        (
            "overfit",
            ("trainer.max_epochs=2", "trainer.limit_train_batches=2"),
            check_overfit,
            "shuffle_buffer: 1",
        ),
        (
            "limit",
            ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"),
            check_limit,
            "limit_train_batches: 2",
        ),
        (
            "profiler",
            ("trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"),
            check_profiler,
            "profiler:",
        ),
    ],
)
def test_debug_preset_runs_the_train_entry_point(
    small_catalogue: Path, tmp_path: Path, preset: str, overrides: tuple[str, ...], check, shown: str
) -> None:
    done = run_entry(
        "train",
        *TINY_ON_CPU,
        f"debug={preset}",
        *overrides,
        f"paths.data_dir={small_catalogue}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = (tmp_path / "outputs" / "debug" / "runs").iterdir()  # the presets' task_name
    check(run)
    assert "CONFIG" in done.stdout and "├── trainer" in done.stdout and shown in done.stdout


class BatchProducts(L.Callback):
    """The product ids of every train batch, per epoch."""

    def __init__(self) -> None:
        self.epochs: list[list[list[int]]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append([])

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, *args) -> None:
        self.epochs[-1].append(batch["product"].tolist())


@pytest.mark.slow
def test_overfit_repeats_the_same_batches_on_a_one_shard_split(compose_train, small_catalogue) -> None:
    """The recipe the preset documents: one shard, no sample shuffle, the same 2 batches every epoch."""
    cfg = compose_train(
        *TINY_ON_CPU,
        "debug=overfit",
        f"data.train={small_catalogue}/demo/train/demo-train-000000.tar",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        data_dir=small_catalogue,
    )
    seen = BatchProducts()
    train(cfg, extra_callbacks=[seen])
    assert len(seen.epochs) == 3 and len(seen.epochs[0]) == 2
    assert seen.epochs[0] == seen.epochs[1] == seen.epochs[2]


class EpochsRun(L.Callback):
    """How many training epochs a fit ran, and the epoch early stopping stopped at."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs += 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stopped_epoch = trainer.early_stopping_callback.stopped_epoch


@pytest.mark.slow
def test_early_stopping_ends_a_run_whose_metric_does_not_improve(compose_train, small_catalogue) -> None:
    """Recall is at most 1, so min_delta=1 makes every validation after the first a non-improvement."""
    cfg = compose_train(
        *TINY_ON_CPU,
        "callbacks=[default,early_stopping]",
        "callbacks.early_stopping.patience=2",
        "callbacks.early_stopping.min_delta=1.0",
        "trainer.max_epochs=6",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "test_before_fit=false",
        "test_after_fit=false",
        data_dir=small_catalogue,
    )
    epochs = EpochsRun()
    train(cfg, extra_callbacks=[epochs])
    assert epochs.epochs == 3 and epochs.stopped_epoch == 2  # the first sets the best, 2 more wait


def test_early_stopping_is_off_by_default_and_its_numbers_are_checked(compose_train) -> None:
    assert "early_stopping" not in compose_train().callbacks
    cfg = compose_train("callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=-1")
    assert cfg.callbacks.early_stopping.monitor == cfg.callbacks.model_checkpoint.monitor == "val/mean_recall"
    with pytest.raises(ConfigError, match="callbacks.early_stopping.patience=-1 is out of range"):
        check_numbers(cfg)


def printed_tree(cfg) -> str:
    """What print_config_tree writes for `cfg`."""
    out = io.StringIO()
    print_config_tree(cfg, file=out)
    return out.getvalue()


def test_the_tree_shows_every_group_and_resolved_values_on_one_line(compose_train) -> None:
    cfg = compose_train("logger=[tensorboard,mlflow]", "debug=limit")
    text = printed_tree(cfg)
    for group in (
        "model",
        "loss",
        "data",
        "module",
        "optimizer",
        "scheduler",
        "trainer",
        "callbacks",
        "logger",
    ):
        assert f"── {group}\n" in text
    assert "── seed: 42" in text and "── task_name: debug" in text
    # resolved, and a long path stays on its key's line however narrow the console
    assert f"tracking_uri: sqlite:///{cfg.paths.output_dir}/mlflow.db" in text
    assert "limit_train_batches: 10" in text


def test_the_tree_prints_unresolved_values_when_an_interpolation_fails(compose_train) -> None:
    cfg = compose_train()
    with open_dict(cfg):
        cfg.trainer.max_epochs = "${trainer.no_such_key}"
    assert "max_epochs: ${trainer.no_such_key}" in printed_tree(cfg)


@pytest.mark.parametrize(
    ("entry", "args", "group"),
    [("evaluate", ("data.batch_size=0",), "── protocol"), ("tune", (), "── scheduler")],
)
def test_entry_points_print_the_tree_before_their_task(tmp_path: Path, entry: str, args, group: str) -> None:
    """Printed first, so even a run its task refuses (here: a bad number, no search) shows its config."""
    done = run_entry(entry, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stdout.startswith("CONFIG") and group in done.stdout
