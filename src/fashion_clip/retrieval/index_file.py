"""The index file: fp16 unit-norm image embeddings, one metadata row per image, and the model identity;
built by embedding every image of a catalogue (shards or a plain folder) with its metadata, with the model
a config names (`index_catalogue`, the index command's work).

Stored with `torch.save` as a dict of tensors and plain Python types (metadata column by column, which
pickles far smaller than one dict per row), so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from fashion_clip.data.catalogue_reader import FolderCatalogue, ShardCatalogue, Transform
from fashion_clip.data.manifest import MANIFEST_NAME
from fashion_clip.data.shard_spec import REMOTE_PREFIXES
from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.models.factory import ClipBundle
from fashion_clip.models.identity import ModelIdentity
from fashion_clip.preflight import preflight
from fashion_clip.retrieval.embedding import ImageRecord, embed_catalogue
from fashion_clip.utils.files import atomic_output
from fashion_clip.utils.launch import from_launch_dir, resolve_device

log = logging.getLogger(__name__)

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


def is_image_folder(source: str) -> bool:
    """A directory without manifest.json is read as loose images; anything else as a shard spec."""
    path = Path(source).expanduser()
    return path.is_dir() and not (path / MANIFEST_NAME).is_file()


def open_catalogue(source: str, transform: Transform) -> torch.utils.data.IterableDataset:
    """The reader for `source`, with errors naming the `source` setting."""
    try:
        if is_image_folder(source):
            return FolderCatalogue(source, transform)
        return ShardCatalogue(source, transform, split="source")
    except MissingInputError as e:
        raise MissingInputError(
            f"source={source!r}: {e} (give a split directory holding {MANIFEST_NAME}, a shard pattern, "
            f"or a folder of images)"
        ) from e


def build_index(
    bundle: ClipBundle,
    dataset: torch.utils.data.IterableDataset,
    identity: ModelIdentity,
    catalogue: str,
    batch_size: int = 256,
    num_workers: int = 2,
    device: torch.device | str = "cpu",
) -> IndexData:
    """Embed every readable image (unit norm, stored as float16 to halve the file) in catalogue order."""
    split = embed_catalogue(
        bundle.model,
        bundle.tokenizer,
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        with_captions=False,
        description="indexing",
    )
    return IndexData(split.image_features.half(), split.images, identity, catalogue, split.skipped)


def launch_location(root: str, value: str) -> str:
    """A local path taken from where the user launched; remote URLs stay as given."""
    return value if value.startswith(REMOTE_PREFIXES) else str(from_launch_dir(root, value))


def index_catalogue(cfg: DictConfig) -> Path:
    """Embed the catalogue at `source` with the configured model and write the index to `out`."""
    preflight(cfg, "index")
    root = cfg.paths.root_dir
    out = Path(launch_location(root, str(cfg.out)))
    refuse_existing(out, cfg.overwrite)
    loaded = load_clip(
        cfg.model, cfg.ckpt_path, root=root, onnx=cfg.get("onnx"), trust_checkpoint=cfg.trust_checkpoint
    )
    bundle, identity = loaded.bundle, loaded.identity
    source = launch_location(root, str(cfg.source))
    index = build_index(
        bundle,
        open_catalogue(source, bundle.val_transform),
        identity,
        source,
        batch_size=cfg.evaluation.batch_size,
        num_workers=cfg.evaluation.num_workers,
        device=resolve_device(cfg.evaluation.device),
    )
    save_index(index, out, cfg.overwrite)
    log.info(
        "indexed %d images of %d products (%d unreadable skipped) from %s with %s into %s (%.1f MB)",
        len(index),
        index.num_products,
        index.skipped,
        source,
        identity.describe(),
        out,
        out.stat().st_size / 1e6,
    )
    return out
