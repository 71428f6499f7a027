"""Entry points run in a fresh interpreter, as a user (or a cluster job) starts them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_python(
    *args: object, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """`python *args` with output captured; the timeout turns a hang into a failure instead of a stuck CI."""
    command = [sys.executable, *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
