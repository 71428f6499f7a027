"""Evaluation scaling rows: benchmarks/eval_scaling.py's full-protocol measurement, one fresh process per
gallery size so each peak memory is that size's own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fresh_process import json_from_fresh_process

EVAL_SCALING = Path(__file__).resolve().with_name("eval_scaling.py")


def eval_row(gallery: int, device: str, dim: int = 512, chunk: int = 1024) -> dict[str, Any]:
    """Seconds and peak memory of the full protocol on `gallery` random products (eval_scaling --one)."""
    command = [sys.executable, str(EVAL_SCALING), "--one", str(gallery), "--dim", str(dim)]
    command += ["--chunk", str(chunk), "--device", device]
    return json_from_fresh_process(command)
