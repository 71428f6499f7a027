"""File names read from data files (a shard `manifest.json`, an ONNX export's `model.json`) are plain names
in that file's own folder: never a path, which could read outside it, nor a URL such as `pipe:...`, which
WebDataset would run as a shell command. Only the user's own config or command line may give those."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from fashion_clip.errors import UserError

# what urllib.parse (and so WebDataset's opener) reads as a URL scheme: `pipe:`, `s3:`, `https:`, `c:`
URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class UnsafeNameError(UserError, ValueError):
    """A data file names something other than a plain file beside it."""


def has_url_scheme(text: str) -> bool:
    """Whether WebDataset would open `text` as a URL (`pipe:` runs a command) rather than a local file."""
    return URL_SCHEME.match(text) is not None


def name_problem(name: object) -> str | None:
    """Why `name` is not a plain file name, or None when it is one."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a file name"
    if not name:
        return "is empty"
    if any(unicodedata.category(char) == "Cc" for char in name):
        return "holds a control character"
    if has_url_scheme(name):
        return f"is a URL (it starts with {name.split(':')[0]}:), not a file name"
    if "/" in name or "\\" in name:
        return "is a path (it holds / or \\), not a file name"
    if name in (".", ".."):
        return "names a folder, not a file"
    return None


def plain_file_name(name: object, source_file: str | Path, key: str, fix: str) -> str:
    """`name` when it is a plain file name beside `source_file`; anything else is refused, saying `fix`."""
    problem = name_problem(name)
    if problem is not None:
        raise UnsafeNameError(
            f"'{source_file}': {key}={name!r} {problem}; files it names must be plain names in its own "
            f"folder (paths and URLs are taken from your config or command line only): {fix}"
        )
    return name
