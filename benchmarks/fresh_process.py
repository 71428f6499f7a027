"""Run one measurement in a fresh interpreter: its peak memory and compiled code are its own."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any


def json_from_fresh_process(command: Sequence[str]) -> dict[str, Any]:
    """The JSON object the command prints on its last stdout line; a failure says which command and why."""
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
