"""`hydra_entry`: each console entry point composes its own config and runs under its own job name."""

from __future__ import annotations

import pytest
from helpers.python_subprocess import run_python

ENTRIES = ("train", "tune", "evaluate", "wise", "export", "index")


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.slow
def test_entry_point_runs_under_its_module_name(entry: str) -> None:
    """Hydra names the job (and its `<job>.log`) after the task's module, not the module wrapping it."""
    done = run_python("-m", f"fashion_clip.{entry}", "--cfg", "hydra", "--package", "hydra.job")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"name: {entry}\n" in done.stdout


@pytest.mark.slow
def test_unknown_override_exits_2_before_the_task_starts() -> None:
    done = run_python("-m", "fashion_clip.index", "no_such_key=1")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "no_such_key" in done.stderr and "Traceback" not in done.stderr
