"""Files: outputs written whole, and file names read from data files kept plain.

Writing: a result file or directory is written under a unique temporary name and renamed, so a crash never
leaves half an output and two writers of one target never share a temporary file; outputs the user did not
ask to replace are refused. The temporary file (directory) lies beside the target, so the final rename
stays on one file system; its contents are flushed to disk before the rename and the parent directory after
it, where the OS allows. Text and JSONL files are written the same way.

Reading: file names read from data files (a shard `manifest.json`, an ONNX export's `model.json`) are plain
names in that file's own folder: never a path, which could read outside it, nor a URL such as `pipe:...`,
which WebDataset would run as a shell command. Only the user's own config or command line may give those.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fashion_clip.errors import ConfigError, UserError

TMP_SUFFIX = ".tmp"
SHOWN_NAMES = 3


class OutputExistsError(ConfigError):
    """An output is already there: replacing it needs the tool's overwrite switch, or would delete files
    fashion-clip did not write."""


def process_umask() -> int:
    """The process umask (setting it is the only way to read it), read once at import."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = process_umask()
# mkstemp/mkdtemp create private (0600/0700) entries; a renamed output gets the mode a plain open() would
FILE_MODE = 0o666 & ~UMASK
DIRECTORY_MODE = 0o777 & ~UMASK


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk, so the rename that publishes it never points at unwritten blocks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries (a rename) to disk where the OS allows it; Windows cannot open one."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory: the rename still happened
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a unique temp path beside `path`; on success it is flushed and replaces `path`, on error it
    is removed. The temp file already exists (empty) when yielded: writers open it for writing."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        fsync_file(tmp)
        os.replace(tmp, target)
        fsync_directory(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under `root` (itself included) before it is published by a rename."""
    for directory, _, files in os.walk(root):
        for name in files:
            fsync_file(Path(directory) / name)
        fsync_directory(Path(directory))


def swap_in(tmp: Path, target: Path) -> None:
    """Rename `tmp` to `target`; an existing `target` is moved aside first (restored if the rename fails)
    and removed whole after, so callers check what it holds before (see `refuse_replacing`)."""
    aside = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old") if target.exists() else None
    if aside is not None:
        os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except OSError:
        if aside is not None:
            os.rename(aside, target)
        raise
    fsync_directory(target.parent)
    if aside is not None:
        shutil.rmtree(aside)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temp directory beside `path`; on success it is flushed and renamed to `path` whole
    (replacing an existing `path`), on error it is removed. One writer of a directory at a time: a second
    one that publishes meanwhile makes the rename fail rather than mix two outputs."""
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, DIRECTORY_MODE)
        fsync_tree(tmp)
        swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def refuse_existing(path: Path, overwrite: bool, switch: str) -> None:
    """Stop before replacing `path` unless the user passed the tool's overwrite `switch`."""
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"'{path}' already exists; choose another output or pass {switch} to replace it"
        )


def foreign_entries(directory: Path, ours: Collection[str]) -> list[str]:
    """Names in `directory` that are not among the files a tool writes there: someone else's."""
    return sorted(p.name for p in directory.iterdir() if p.name not in ours)


def holds_something(path: Path) -> bool:
    """Whether `path` is a file or a non-empty directory: an empty directory has nothing to lose."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def refuse_replacing(path: Path, overwrite: bool, switch: str, ours: Collection[str]) -> None:
    """A directory output `path` holding something is replaced only with `switch`, and only when it holds
    nothing but the files named `ours`: replacing removes the old directory whole, so anything else there
    is refused even with the switch rather than deleted."""
    if not holds_something(path):
        return
    refuse_existing(path, overwrite, switch)
    foreign = foreign_entries(path, ours) if path.is_dir() else [path.name]
    if foreign:
        shown = ", ".join(foreign[:SHOWN_NAMES]) + (" ..." if len(foreign) > SHOWN_NAMES else "")
        raise OutputExistsError(
            f"'{path}' holds files fashion-clip did not write ({shown}); even with {switch} it is not "
            "replaced, since that would delete them: move them out or choose another output"
        )


@contextlib.contextmanager
def atomic_text(path: str | Path) -> Iterator[Any]:
    """A text file that appears under `path` only once complete, so a crash never leaves half a file."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]], total: int) -> Path:
    """One JSON object per line, streamed with progress, so large splits never build the file in memory."""
    from tqdm.auto import tqdm  # here: the torch-free ONNX client imports this module's name checks

    with atomic_text(path) as f:
        for record in tqdm(records, total=total, desc=f"writing {Path(path).name}", unit="line"):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return Path(path)


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
