"""open_clip_train's side of a training row: its own CLI, in its own virtualenv, timed from its log."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from training_rows import PRECISIONS, TrainingRow

from fashion_clip.data.manifest import read_manifest
from fashion_clip.models.factory import MODEL_CONFIG_DIR

LAUNCHER = Path(__file__).resolve().with_name("openclip_train_launcher.py")
# train.py logs "... Batch (t): 0.201, 318.4/s, 318.4/s/gpu ..." for the last step when logging every step
STEP_RATE = re.compile(r"Batch \(t\): [0-9.]+, [0-9.eE+-]+/s, ([0-9.eE+-]+)/s/gpu")


def shard_urls(shards: Path) -> str:
    """The split's shards (from its manifest) as one WebDataset url string, `::`-separated."""
    return "::".join(str(shards / shard.name) for shard in read_manifest(shards).shards)


def openclip_command(python: Path, row: TrainingRow, shards: Path, workers: int) -> list[str]:
    """Same shards, model, batch, precision, optimizer settings and steps as our run; one epoch of exactly
    the row's steps, logging every step, no validation, and `--logs none` so no checkpoint is written."""
    command = [str(python.absolute()), str(LAUNCHER), str(MODEL_CONFIG_DIR)]
    command += ["--train-data", shard_urls(shards), "--dataset-type", "webdataset"]
    command += ["--train-num-samples", str(row.total_steps * row.batch_size), "--epochs", "1"]
    command += ["--model", row.model, "--batch-size", str(row.batch_size), "--workers", str(workers)]
    command += ["--precision", PRECISIONS[row.precision][1], "--seed", "42"]
    command += ["--lr", "5e-5", "--wd", "0.1", "--beta1", "0.9", "--beta2", "0.98", "--eps", "1e-6"]
    command += ["--warmup", "100", "--save-frequency", "0", "--log-every-n-steps", "1", "--logs", "none"]
    command += ["--name", row.name]
    return command + (["--siglip"] if row.loss == "siglip" else [])


def step_seconds_from_log(text: str, batch_size: int) -> list[float]:
    """Each step's seconds, from the per-step rate open_clip_train logs (6 significant digits)."""
    return [batch_size / float(rate) for rate in STEP_RATE.findall(text)]


def run_openclip(python: Path, row: TrainingRow, shards: Path, workers: int, run_dir: Path) -> list[float]:
    """Train the row with open_clip_train (run from run_dir, where `--logs none` leaves its text log)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(run_dir / "none", ignore_errors=True)  # it refuses to start where its log already is
    command = openclip_command(python, row, shards, workers)
    with open(run_dir / "stdout.log", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir, check=False)
    text = (run_dir / "stdout.log").read_text()
    if done.returncode:
        raise RuntimeError(
            f"open_clip_train failed on row {row.name} (exit {done.returncode}); see {run_dir}/stdout.log"
        )
    return step_seconds_from_log(text, row.batch_size)
