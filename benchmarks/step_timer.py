"""Lightning callback for `bench.py`: how long each training step took, end to end, saved as JSON.

Added to a `python -m fashion_clip.train` run from the command line (with `benchmarks/` on PYTHONPATH):
`+callbacks.step_timer._target_=step_timer.StepTimer +callbacks.step_timer.out=PATH`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L

from fashion_clip.utils.files import atomic_output


class StepTimer(L.Callback):
    """Step i lasts from the end of step i-1 to its own end (waiting for data included): the same span
    that open_clip_train reports as `Batch (t)`, so both trainers are timed alike."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.ends: list[float] = []
        self.start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The first step starts when the first epoch does, like open_clip_train's loop clock."""
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        """After the optimizer step: the step is done."""
        self.ends.append(time.perf_counter())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write every step's duration in seconds, in order."""
        starts = [self.start or 0.0, *self.ends[:-1]]
        seconds = [end - start for start, end in zip(starts, self.ends, strict=True)]
        with atomic_output(self.out) as tmp:
            tmp.write_text(json.dumps({"step_seconds": seconds}))
