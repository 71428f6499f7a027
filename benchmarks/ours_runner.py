"""Our side of a training row: `python -m fashion_clip.train` with the row's settings and a step timer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from training_rows import PRECISIONS, TrainingRow

BENCH_DIR = Path(__file__).resolve().parent


def ours_command(
    row: TrainingRow, shards: Path, workers: int, run_dir: Path, overrides: Sequence[str] = ()
) -> list[str]:
    """The training CLI as a user runs it, minus what the other trainer does not do either:
    validation, testing before/after and checkpoints (Lightning's fallback one too: a ViT-B/32 run's
    would be 1.7 GB). The TensorBoard logger stays on."""
    return [
        sys.executable,
        "-m",
        "fashion_clip.train",
        f"model={row.preset}",
        "model.pretrained=null",
        f"loss={row.loss}",
        *(f"data.{split}={shards}" for split in ("train", "val", "test")),
        f"data.batch_size={row.batch_size}",
        f"data.num_workers={workers}",
        "trainer=gpu" if row.device == "cuda" else "trainer=cpu",
        f"trainer.precision={PRECISIONS[row.precision][0]}",
        f"trainer.max_steps={row.total_steps}",
        "+trainer.limit_val_batches=0",
        "test_before_fit=false",
        "test_after_fit=false",
        "~callbacks.model_checkpoint",
        "~callbacks.periodic_checkpoint",
        "+trainer.enable_checkpointing=false",
        f"hydra.run.dir={run_dir}",
        "+callbacks.step_timer._target_=step_timer.StepTimer",
        f"+callbacks.step_timer.out={run_dir / 'step_seconds.json'}",
        *row.ours_overrides,
        *overrides,
    ]


def run_ours(
    row: TrainingRow, shards: Path, workers: int, run_dir: Path, overrides: Sequence[str] = ()
) -> list[float]:
    """Train the row and return every step's seconds; the run's output is kept in run_dir/stdout.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
    }
    command = ours_command(row, shards, workers, run_dir, overrides)
    with open(run_dir / "stdout.log", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode:
        raise RuntimeError(
            f"our trainer failed on row {row.name} (exit {done.returncode}); see {run_dir}/stdout.log"
        )
    return json.loads((run_dir / "step_seconds.json").read_text())["step_seconds"]
