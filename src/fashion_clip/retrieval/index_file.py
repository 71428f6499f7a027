"""The index file: fp16 unit-norm image embeddings, one metadata row per image, and the model identity.

Stored with `torch.save` as a dict of tensors and plain Python types (metadata column by column, which
pickles far smaller than one dict per row), so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.evaluation.embedded_split import ImageRecord
from fashion_clip.retrieval.model_identity import ModelIdentity
from fashion_clip.utils.atomic_output import atomic_output

FORMAT_NAME = "fashion-clip-index"
FORMAT_VERSION = 1
RECORD_FIELDS = tuple(f.name for f in fields(ImageRecord))
REQUIRED_KEYS = ("format", "version", "embeddings", "rows", "model", "catalogue", "skipped")


@dataclass
class IndexData:
    """A searchable catalogue: row i of `embeddings` is the image described by `records[i]`."""

    embeddings: torch.Tensor
    records: list[ImageRecord]
    model: ModelIdentity
    catalogue: str
    skipped: int = 0

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.records):
            raise ValueError(f"embeddings {tuple(self.embeddings.shape)} for {len(self.records)} records")
        if self.embeddings.dtype != torch.float16:
            raise ValueError(f"index embeddings must be float16, got {self.embeddings.dtype}")

    def __len__(self) -> int:
        return len(self.records)

    @cached_property
    def max_images_per_product(self) -> int:
        """Largest image count of one product: top-(k x this) images always hold k distinct products."""
        return max(Counter(r.product_id for r in self.records).values())

    @property
    def num_products(self) -> int:
        """Distinct products, the unit search results are counted in."""
        return len({r.product_id for r in self.records})


def to_payload(index: IndexData) -> dict[str, Any]:
    """The dict written to disk: only tensors, str, int, None, lists and dicts."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "embeddings": index.embeddings.contiguous(),
        "rows": {name: [getattr(r, name) for r in index.records] for name in RECORD_FIELDS},
        "model": index.model.to_dict(),
        "catalogue": index.catalogue,
        "skipped": index.skipped,
    }


def from_payload(payload: dict[str, Any]) -> IndexData:
    """Rebuild the dataclasses from a payload already checked by `check_payload`."""
    rows = payload["rows"]
    records = [ImageRecord(*values) for values in zip(*(rows[name] for name in RECORD_FIELDS), strict=True)]
    return IndexData(
        payload["embeddings"],
        records,
        ModelIdentity(**payload["model"]),
        payload["catalogue"],
        payload["skipped"],
    )


def check_payload(payload: object, path: Path) -> dict[str, Any]:
    """The payload if it is an index this code reads; otherwise an error saying what to do."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise UserError(
            f"'{path}' is not a fashion-clip index: build one with `python -m fashion_clip.index`"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise UserError(f"index '{path}' lacks {', '.join(missing)}: it is damaged, rebuild it")
    if payload["version"] != FORMAT_VERSION:
        raise UserError(
            f"index '{path}' has format version {payload['version']}, this fashion-clip reads version "
            f"{FORMAT_VERSION}: rebuild it with `python -m fashion_clip.index` or use a matching fashion-clip"
        )
    return payload


def save_index(index: IndexData, path: str | Path, overwrite: bool = False) -> Path:
    """Write the index under a temp name and rename; an existing file is kept unless `overwrite`."""
    path = Path(path)
    refuse_existing(path, overwrite)
    with atomic_output(path) as tmp:
        torch.save(to_payload(index), tmp)
    return path


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Stop before any work when the output exists and the user did not ask to replace it."""
    if path.is_dir():
        raise ConfigError(f"out='{path}' is a directory: give a file name such as {path / 'index.pt'}")
    if path.exists() and not overwrite:
        raise ConfigError(f"'{path}' already exists: pass overwrite=true to replace it, or another out=")


def load_index(path: str | Path) -> IndexData:
    """Read an index safely (no arbitrary pickles), with errors naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingInputError(
            f"index '{path}' does not exist: build it with `python -m fashion_clip.index`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise UserError(f"cannot read index '{path}' ({type(e).__name__}: {e}): rebuild it") from e
    return from_payload(check_payload(payload, path))
