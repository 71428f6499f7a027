"""Turn what a user writes for a split (brace pattern, glob, directory, list) into concrete shard URLs."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import braceexpand

from fashion_clip.data.manifest import MANIFEST_NAME, read_manifest
from fashion_clip.errors import MissingInputError
from fashion_clip.utils.files import has_url_scheme

# URLs are taken as given only from the user's own spec; a manifest or a directory listing gives local files
REMOTE_PREFIXES = ("pipe:", "http://", "https://", "s3://", "gs://")


def local_shard(path: str) -> str:
    """A local path written so WebDataset opens it as a file: a relative name it would read otherwise (a
    file called `pipe:cmd` as a command, `-` as stdin) gets `./` in front, so a file name never runs one."""
    return f"./{path}" if path == "-" or has_url_scheme(path) else path


def _expand_one(spec: str) -> list[str]:
    """Expand one pattern; remote URLs are trusted, local ones must exist so typos fail early."""
    path = Path(spec).expanduser()
    if path.is_dir():
        manifest = read_manifest(path)
        return [local_shard(str(path / shard.name)) for shard in manifest.shards]
    urls = list(braceexpand.braceexpand(str(path) if not spec.startswith(REMOTE_PREFIXES) else spec))
    if spec.startswith(REMOTE_PREFIXES):
        return urls
    return sorted({local_shard(match) for url in urls for match in glob.glob(url)})


def resolve_shards(spec: str | Sequence[str], split: str = "train") -> list[str]:
    """All shard URLs of a split, in a stable order; an empty result is a config error, not an empty epoch."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    urls = [url for one in specs for url in _expand_one(str(one))]
    if not urls:
        raise MissingInputError(
            f"data.{split}: shard spec {spec!r} matched no file. Give a brace pattern "
            f"(shards-{{000000..000009}}.tar), a glob (shards/*.tar) or a directory holding {MANIFEST_NAME}."
        )
    return urls


def shard_sizes(spec: str | Sequence[str]) -> list[int] | None:
    """Samples per shard when every part is a manifest directory; None when the sizes are unknown."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    dirs = [Path(str(s)).expanduser() for s in specs]
    if not all(d.is_dir() for d in dirs):
        return None
    return [shard.samples for d in dirs for shard in read_manifest(d).shards]


def count_samples(spec: str | Sequence[str]) -> int | None:
    """Samples in a split when every part is a manifest directory; None when the size is unknown."""
    sizes = shard_sizes(spec)
    return None if sizes is None else sum(sizes)
