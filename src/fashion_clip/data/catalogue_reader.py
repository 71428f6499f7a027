"""Read a catalogue in order with its metadata (shards or a plain image folder), for evaluation and indexing.

Training batches carry only what the loss needs; evaluation, export and search also need each image's
key, product, category, captions and where it lives, so they read through these datasets instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from fashion_clip.data.raw_samples import raw_samples
from fashion_clip.data.samples import IMAGE_EXTENSIONS, decoded_samples
from fashion_clip.data.shard_spec import resolve_shards
from fashion_clip.errors import MissingInputError
from fashion_clip.utils.metadata_text import metadata_text

log = logging.getLogger(__name__)

Transform = Callable[[Image.Image], torch.Tensor]


NOT_ATTRIBUTES = ("product_id", "captions")


def metadata_texts(meta: dict[str, Any]) -> dict[str, str]:
    """The json's non-empty fields of any type (category, colour, ...) as text, for attribute search;
    the product id and captions are what the sample is, not attributes of it."""
    texts = {name: metadata_text(value) for name, value in meta.items() if name not in NOT_ATTRIBUTES}
    return {name: text for name, text in texts.items() if text}


def catalogue_item(
    image: torch.Tensor, key: str, meta: dict[str, Any], captions: list[str], source: str, skipped: int
) -> dict[str, Any]:
    """The one item shape both readers yield, so embedding code never cares where images came from."""
    return {
        "image": image,
        "key": key,
        "product_id": str(meta.get("product_id", key)),
        "category": metadata_text(meta.get("category")) or None,
        "attributes": metadata_texts(meta),
        "captions": captions,
        "source": source,
        "skipped": skipped,
    }


def skipped_only(skipped: int) -> dict[str, Any]:
    """A marker carrying skips that no later sample can carry (the end of a worker's share)."""
    return {"image": None, "skipped": skipped}


class ShardCatalogue(torch.utils.data.IterableDataset):
    """Every sample of a split's shards, decoded with metadata; corrupt samples are skipped and counted."""

    def __init__(self, spec: str | list[str], transform: Transform, split: str = "test") -> None:
        super().__init__()
        self.urls = resolve_shards(spec, split)
        self.transform = transform

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for sample, decoded, skipped in decoded_samples(
            raw_samples(self.urls, by_worker=True), self.transform
        ):
            if decoded is None:
                yield skipped_only(skipped)
                continue
            meta, captions, image = decoded
            yield catalogue_item(
                image, sample.get("__key__", "?"), meta, captions, sample.get("__url__", "?"), skipped
            )


def folder_images(root: Path) -> list[Path]:
    """Image files under `root`, sorted so keys and index rows are stable between runs."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)


class FolderCatalogue(torch.utils.data.IterableDataset):
    """Images under a folder: product = file stem, caption = sidecar `.txt`, category = parent folder."""

    def __init__(self, root: str | Path, transform: Transform) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise MissingInputError(f"image folder '{self.root}' does not exist")
        self.paths = folder_images(self.root)
        if not self.paths:
            raise MissingInputError(
                f"image folder '{self.root}' holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        self.transform = transform

    def _item(self, path: Path, skipped: int) -> dict[str, Any]:
        """One file as a catalogue item; the caption falls back to the file name so search still shows it."""
        with Image.open(path) as image:
            tensor = self.transform(image.convert("RGB"))
        sidecar = path.with_suffix(".txt")
        caption = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""
        relative = path.relative_to(self.root)
        category = relative.parent.name if relative.parent != Path(".") else None
        meta = {"product_id": path.stem, "category": category}
        return catalogue_item(tensor, str(relative), meta, [caption or path.stem], str(path), skipped)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        start, step = (info.id, info.num_workers) if info else (0, 1)
        skipped = 0
        for path in self.paths[start::step]:
            try:
                item = self._item(path, skipped)
            except Exception as e:  # unreadable file: count it and go on with the rest of the folder
                skipped += 1
                log.warning("skipping unreadable image %s: %s", path, e)
                continue
            yield item
            skipped = 0
        if skipped:
            yield skipped_only(skipped)


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and list metadata (strings do not batch); `skipped` totals every item's skips."""
    real = [item for item in items if item["image"] is not None]
    keys = ("key", "product_id", "category", "attributes", "captions", "source")
    batch: dict[str, Any] = {k: [item[k] for item in real] for k in keys}
    batch["image"] = torch.stack([item["image"] for item in real]) if real else None
    batch["skipped"] = sum(item["skipped"] for item in items)
    return batch
