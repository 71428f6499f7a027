"""Sweeps and scale-out: the model x loss study, DDP on 2 CPU processes, and submitit launchers."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
from helpers.python_subprocess import run_python
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from fashion_clip.api import compose_with_hydra
from fashion_clip.config import CONFIG_DIR
from fashion_clip.errors import ConfigError
from fashion_clip.launcher_check import check_launcher
from fashion_clip.records import RESULTS_NAME, read_results

CONFIG_DIR_PATH = Path(CONFIG_DIR)
QUICK = ("trainer=cpu", "trainer.max_steps=2", "data.num_workers=0", "data.batch_size=8", "protocol=[full]")


def train_cli(*overrides: str, data_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real entry point, as a user (or a cluster job) would."""
    return run_python("-m", "fashion_clip.train", *overrides, f"paths.data_dir={data_dir}", timeout=timeout)


@pytest.mark.slow
def test_model_loss_study_runs_every_loss_and_ends_with_the_comparison(small_catalogue: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    done = train_cli(
        "-m",
        "experiment=model_loss_study",
        "model=tiny",
        "data=demo",
        *QUICK,
        f"hydra.sweep.dir={sweep}",
        data_dir=small_catalogue,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.rglob(RESULTS_NAME))
    assert len(runs) == 2
    assert {read_results(run / RESULTS_NAME)[0].loss for run in runs} == {"infonce", "siglip"}
    with (sweep / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["loss"], r["stage"]) for r in rows) == [
        ("infonce", "base"),
        ("infonce", "finetuned"),
        ("siglip", "base"),
        ("siglip", "finetuned"),
    ]
    assert all(r["vs_base"].endswith("%") for r in rows if r["stage"] == "finetuned")
    assert {r["run"] for r in rows} == {"0_loss=infonce", "1_loss=siglip"}  # only the swept key
    assert (sweep / "comparison.png").stat().st_size > 0


def test_the_study_sweeps_three_models_across_both_losses(compose_train) -> None:
    cfg = compose_train("experiment=model_loss_study")
    assert OmegaConf.to_container(cfg.protocol).keys() == {"full", "sample100"}
    assert cfg.data.name == "fashiongen"


def test_the_product_study_sweeps_its_variants(compose_train) -> None:
    """InfoNCE pair/product x three batchings, SigLIP pair/product, InfoNCE product + identical captions:
    each variant (`{loss}_{positives}[-samecaption]_{batching}`) sets what it is named."""
    variants = sorted(p.stem for p in (CONFIG_DIR_PATH / "product_study").glob("*.yaml"))
    assert len(variants) == 9
    experiment = OmegaConf.load(CONFIG_DIR_PATH / "experiment" / "product_study.yaml")
    assert experiment.hydra.sweeper.params == {"product_study": "glob(*)"}
    cfg = compose_train("experiment=product_study")
    assert OmegaConf.to_container(cfg.protocol).keys() == {"full", "sample100"}
    assert cfg.data.name == "demo_hard"
    for variant in variants:
        cfg = compose_train("experiment=product_study", f"product_study={variant}")
        loss, positives, batching = variant.split("_", 2)
        assert cfg.loss._target_.endswith({"infonce": "InfoNCELoss", "siglip": "SigLipLoss"}[loss])
        expected = (positives.removesuffix("-samecaption"), positives.endswith("-samecaption"), batching)
        assert (cfg.loss.positives, cfg.loss.same_caption_positive, cfg.data.batching) == expected


@pytest.mark.slow
@pytest.mark.xdist_group("local_ports")  # a free port for other processes: see conftest.py
def test_ddp_on_two_cpu_processes(small_catalogue: Path, tmp_path: Path) -> None:
    """Lightning DDP with gloo: both ranks train, gather features for the loss and finish together."""
    run_dir = tmp_path / "ddp"
    done = train_cli(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_steps=2",
        "trainer.precision=32-true",
        "data.resampled=true",
        "data.num_workers=0",
        "data.batch_size=8",
        "test_before_fit=false",
        "protocol=[full]",
        f"hydra.run.dir={run_dir}",
        data_dir=small_catalogue,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MEMBER: 2/2" in done.stderr + done.stdout
    assert read_results(run_dir / RESULTS_NAME)[0].stage == "finetuned"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_slurm_launcher_composes_with_the_trainer_reading_its_allocation(compose_train) -> None:
    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.nodes=2",
        "trainer=slurm",
    ]
    cfg = compose_with_hydra("train", overrides)
    HydraConfig.instance().set_config(cfg)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.nodes, launcher.tasks_per_node) == ("gpu", 2, 8)
    assert (cfg.trainer.num_nodes, cfg.trainer.devices, cfg.trainer.strategy) == (2, 8, "ddp")
    check_launcher(launcher)


@pytest.mark.slow
def test_slurm_without_partition_fails_before_submitting(small_catalogue: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hydra.launcher.partition"):
        check_launcher(OmegaConf.create({"_target_": "x.SlurmLauncher", "partition": "???"}))
    done = train_cli("-m", "hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}", data_dir=small_catalogue)
    assert done.returncode != 0
    assert "needs a partition" in done.stderr
    assert not list(tmp_path.rglob(".submitit"))


@pytest.mark.slow
def test_submitit_local_launch_runs_a_tiny_job(small_catalogue: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "local"
    done = train_cli(
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        *QUICK,
        "test_before_fit=false",
        f"hydra.sweep.dir={sweep}",
        data_dir=small_catalogue,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(sweep.rglob(RESULTS_NAME))) == 1
    assert list(sweep.rglob(".submitit/*/*_result.pkl"))
