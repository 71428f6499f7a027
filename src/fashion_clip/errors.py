"""User-facing errors: config or input mistakes whose message says what to do, shown without a traceback."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("fashion_clip")

F = TypeVar("F", bound=Callable)


class UserError(Exception):
    """Base of errors a user can fix from the message alone; entry points print these and exit 2."""


class ConfigError(UserError, ValueError):
    """A config value is invalid or missing."""


class MissingInputError(UserError, FileNotFoundError):
    """A file, shard or directory the config points at does not exist."""


class DownloadError(UserError, RuntimeError):
    """Weights or a tokenizer could not be fetched (typically offline); the message says how to go local."""


def find_user_error(exc: BaseException | None) -> UserError | None:
    """Hydra's instantiate wraps errors from targets; look through the cause chain for ours."""
    while exc is not None:
        if isinstance(exc, UserError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


USER_ERROR_EXIT = 2
# entry points whose task function started: Hydra exits 1 both for composition errors and for crashes
_started: set[str] = set()


def exit_on_user_error(entry_point: F) -> F:
    """Decorate a CLI so user mistakes end with a one-paragraph message and exit code 2, not a traceback
    (with HYDRA_FULL_ERROR=1, the traceback, as Hydra shows it for everything else)."""

    @functools.wraps(entry_point)
    def wrapper(*args, **kwargs):
        _started.add(entry_point.__qualname__)
        try:
            return entry_point(*args, **kwargs)
        except Exception as exc:
            user_error = find_user_error(exc)
            if user_error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            if logging.getLogger().hasHandlers():  # Hydra's run log keeps it; bare CLIs would print it twice
                log.error("%s: %s", type(user_error).__name__, user_error)
            print(f"error: {user_error}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)

    return wrapper  # type: ignore[return-value]


def hydra_cli(hydra_main: Callable[[], None]) -> Callable[[], None]:
    """The console entry point around a `@hydra.main` function: a config Hydra cannot compose (unknown
    option, value of the wrong type for a schema, bad override syntax) is the user's mistake too, so it
    exits 2 like ours; a crash inside a run keeps Hydra's exit code 1 and traceback."""

    @functools.wraps(hydra_main)
    def cli() -> None:
        try:
            hydra_main()
        except SystemExit as exit_:
            if exit_.code == 1 and not _started:
                sys.exit(USER_ERROR_EXIT)
            raise

    return cli
