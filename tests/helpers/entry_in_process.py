"""Console entry points called in the test's own process, as `python -m fashion_clip.<entry> *args` would
run them, for tables of cases where a fresh interpreter adds nothing but its ~10 s start-up.

The call sees what a fresh process would: its own `sys.argv`, working directory and environment, an empty
`fashion_clip.errors._started` (a process's first entry point), and its output captured. What the entry
point changes in this process (logging handlers Hydra configures, environment variables, random states,
torch's global switches) is put back afterwards, so the next test in this worker does not see it.
Keep at least one real subprocess per entry point elsewhere, so the console path itself stays tested.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import random
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from fashion_clip import errors


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Hydra's `dictConfig` replaces the root logger's handlers (pytest's capture among them) and adds a
    file handler in the run directory: close what the call added and put every logger back as it was."""
    manager = logging.Logger.manager
    loggers = [logging.root, *(v for v in manager.loggerDict.values() if isinstance(v, logging.Logger))]
    saved = {
        logger: (logger.level, list(logger.handlers), logger.propagate, logger.disabled) for logger in loggers
    }
    disable = manager.disable
    try:
        yield
    finally:
        kept = {handler for _, handlers, _, _ in saved.values() for handler in handlers}
        now = [logging.root, *(v for v in manager.loggerDict.values() if isinstance(v, logging.Logger))]
        for logger in now:
            for handler in logger.handlers:
                if handler not in kept:
                    handler.close()
            level, handlers, propagate, disabled = saved.get(logger, (logging.NOTSET, [], True, False))
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate, logger.disabled = propagate, disabled
        logging.disable(disable)


@contextlib.contextmanager
def _global_state_restored() -> Iterator[None]:
    """Random states and torch's process-wide switches a run may set (seeding, determinism, threads)."""
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    switches = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.get_float32_matmul_precision(),
        torch.get_num_threads(),
        torch.get_default_dtype(),
    )
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        deterministic, warn_only, matmul_precision, threads, dtype = switches
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_float32_matmul_precision(matmul_precision)
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)


def run_entry(
    entry: str, *args: object, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m fashion_clip.<entry> *args` in this process: the exit code (SystemExit's, 0 on return,
    1 and the traceback on stderr for an uncaught exception, as the interpreter would) and the output."""
    module = importlib.import_module(f"fashion_clip.{entry}")
    argv = [module.__file__, *map(str, args)]
    stdout, stderr = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, env or {}, clear=env is not None))
        stack.enter_context(mock.patch.object(sys, "argv", argv))
        stack.enter_context(mock.patch.object(errors, "_started", set()))
        stack.enter_context(_logging_restored())
        stack.enter_context(_global_state_restored())
        stack.callback(os.chdir, old_cwd)
        stack.enter_context(contextlib.redirect_stdout(stdout))
        stack.enter_context(contextlib.redirect_stderr(stderr))
        if cwd is not None:
            os.chdir(cwd)
        try:
            module.main()
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:  # sys.exit("message"): the interpreter prints it and exits 1
                print(exit_.code, file=sys.stderr)
                code = 1
        except Exception:
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())
