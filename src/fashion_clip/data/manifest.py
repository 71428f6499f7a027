"""The `manifest.json` that sits beside a directory of shards, so configs never spell brace ranges."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.utils.files import atomic_output, plain_file_name

MANIFEST_NAME = "manifest.json"
REWRITE_MANIFEST = "write the split again with the shard tools, or edit the manifest to list the tars by name"


@dataclass
class ShardEntry:
    """One tar file of a split: name relative to the manifest, sample count and checksum."""

    name: str
    samples: int
    sha256: str


@dataclass
class Manifest:
    """What a shard directory holds, so a loader can find shards and know the epoch size."""

    dataset: str
    pattern: str
    shards: list[ShardEntry] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    # how the writer re-encoded images (max_side, jpeg_quality); empty for shards written elsewhere
    encoding: dict = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        """Total samples over all shards (sizes an epoch in resampled mode)."""
        return sum(s.samples for s in self.shards)

    def to_json(self) -> str:
        """Serialise with the derived sample count included for human readers."""
        return json.dumps({**asdict(self), "num_samples": self.num_samples}, indent=2)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Checksum a shard without loading it whole (shards can be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: str | Path, manifest: Manifest) -> Path:
    """Write atomically (temp name, then rename) so a crash never leaves a half manifest."""
    target = Path(directory) / MANIFEST_NAME
    with atomic_output(target) as tmp:
        tmp.write_text(manifest.to_json())
    return target


def read_manifest(directory: str | Path) -> Manifest:
    """Load a manifest, with an error that names the file and the key when it is malformed; shard names
    must be plain file names beside it, so a crafted manifest cannot reach outside its folder."""
    path = Path(directory) / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text())
        shards = [ShardEntry(**s) for s in raw["shards"]]
        manifest = Manifest(
            dataset=raw["dataset"],
            pattern=raw["pattern"],
            shards=shards,
            skipped=raw.get("skipped", []),
            encoding=dict(raw.get("encoding", {})),
        )
    except FileNotFoundError as e:
        raise MissingInputError(f"{path}: no shard manifest here; write shards with a manifest first") from e
    except (KeyError, TypeError, ValueError) as e:  # JSONDecodeError is a ValueError, as is dict([1])
        raise ConfigError(f"{path}: malformed shard manifest ({type(e).__name__}: {e})") from e
    for number, shard in enumerate(manifest.shards):
        plain_file_name(shard.name, path.absolute(), f"shards[{number}].name", REWRITE_MANIFEST)
    return manifest
