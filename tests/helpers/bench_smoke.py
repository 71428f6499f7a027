"""A benchmark script's `--smoke` run in a fresh process, as its make target would start it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def smoke_run(script: str, root: Path) -> tuple[dict, str]:
    """`benchmarks/<script> --smoke` writing under `root`: its results.json and results.md."""
    command = [sys.executable, str(BENCH_DIR / script), "--smoke", "--out", str(root / "out")]
    subprocess.run(command + ["--work-dir", str(root / "work")], check=True, capture_output=True, text=True)
    return json.loads((root / "out" / "results.json").read_text()), (root / "out" / "results.md").read_text()
