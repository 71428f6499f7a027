"""Embed every image of a catalogue (shards or a plain folder) into an index, with its metadata."""

from __future__ import annotations

from pathlib import Path

import torch

from fashion_clip.data.catalogue_reader import FolderCatalogue, ShardCatalogue, Transform
from fashion_clip.data.manifest import MANIFEST_NAME
from fashion_clip.errors import MissingInputError
from fashion_clip.evaluation.embedding import embed_catalogue
from fashion_clip.models.factory import ClipBundle
from fashion_clip.retrieval.index_file import IndexData
from fashion_clip.retrieval.model_identity import ModelIdentity


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
