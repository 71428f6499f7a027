"""Per-sample decoding and batch collation, where corrupt samples are skipped *and counted*."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from PIL import Image

from fashion_clip.data.image_pipeline import decodes_lazily, stack_images
from fashion_clip.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
# rewrites a training caption with the given RNG (data/caption_augment.py), so a seed replays it
CaptionTransform = Callable[[str, random.Random], str]
# called with each sample that fails to decode (a `SkipTally` counts them per shard)
OnSkip = Callable[[dict[str, Any]], None]
# a stream's skip rate is judged from its MIN_SKIPPED-th undecodable sample on, so a few bad samples early
# in a stream never stop a run (data.max_skip_fraction in conf/data/_base.yaml)
MIN_SKIPPED = 20
WORST_SHARDS = 3


class DamagedShardsError(UserError, RuntimeError):
    """Too many train samples failed to decode: the message names the shards to check or re-ingest."""


def worst_shards(skipped: Mapping[str, int], count: int = WORST_SHARDS) -> str:
    """The shards with the most undecodable samples, worst first, as a message names them."""
    return ", ".join(f"{url} ({n} skipped)" for url, n in collections.Counter(skipped).most_common(count))


def too_damaged(skipped: int, read: int, max_fraction: float | None) -> bool:
    """Whether a stream skipped more than `max_fraction` of the samples it read; judged only from its
    MIN_SKIPPED-th skip on, and never when the check is off (None)."""
    return max_fraction is not None and skipped >= MIN_SKIPPED and skipped > max_fraction * read


def damage_message(skipped: Mapping[str, int], read: int, max_fraction: float, where: str) -> str:
    """What stopped the run and what to do, naming the worst shards."""
    total = sum(skipped.values())
    return (
        f"data.train: {total} of the {read} samples read {where} failed to decode ({total / read:.0%}), more "
        f"than data.max_skip_fraction={max_fraction}. Worst shards: {worst_shards(skipped)}. Check those "
        "shards (the warnings above name each bad sample) and re-ingest them from their source "
        "(docs/data.md), or raise data.max_skip_fraction (null turns the check off)."
    )


class SkipTally:
    """Undecodable samples per shard in one worker's stream, checked against `data.max_skip_fraction`
    at each one: the check needs no extra pass over the data and stops a run as soon as it fails."""

    def __init__(self, max_fraction: float | None, read: Callable[[], int], where: str) -> None:
        self.max_fraction = max_fraction
        self.read = read
        self.where = where
        self.skipped: collections.Counter[str] = collections.Counter()

    def __call__(self, sample: dict[str, Any]) -> None:
        """Count one undecodable sample; raise DamagedShardsError once the stream is over the limit."""
        self.skipped[sample.get("__url__", "?")] += 1
        read = self.read()
        if too_damaged(self.skipped.total(), read, self.max_fraction):
            raise DamagedShardsError(damage_message(self.skipped, read, self.max_fraction, self.where))


def product_key(product_id: str) -> int:
    """Stable int64 for a product id string, so the recall metric can compare ids as tensors."""
    return int.from_bytes(hashlib.blake2b(product_id.encode(), digest_size=8).digest(), "little", signed=True)


def caption_key(caption: str) -> int:
    """Stable int64 for a caption's text (whitespace folded), so losses can tell identical captions."""
    return product_key(" ".join(caption.split()))


def sample_captions(sample: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """All captions of a sample: the metadata's list when present, else the `.txt` member."""
    captions = [c for c in meta.get("captions", []) if isinstance(c, str) and c.strip()]
    if not captions and "txt" in sample:
        captions = [sample["txt"].decode("utf-8").strip()]
    if not captions or not captions[0]:
        raise ValueError("no caption (.txt empty and no 'captions' in .json)")
    return captions


def image_bytes(sample: dict[str, Any]) -> bytes:
    """First image member, still encoded."""
    ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
    if ext is None:
        raise ValueError(f"no image member (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return sample[ext]


def decode_image(sample: dict[str, Any]) -> Image.Image:
    """First image member, fully decoded now so truncated files fail here rather than in the model."""
    image = Image.open(io.BytesIO(image_bytes(sample)))
    image.load()
    return image.convert("RGB")


def decode_sample(
    sample: dict[str, Any], transform: Callable[[Any], Any]
) -> tuple[dict[str, Any], list[str], Any]:
    """Metadata, captions and transformed image of a raw shard sample; raises on anything unusable, so
    training and evaluation readers agree on what counts as a corrupt sample. A transform that decodes
    the image itself (data/image_pipeline.py: reduced-scale JPEG decode) gets its encoded bytes."""
    meta = json.loads(sample["json"]) if "json" in sample else {}
    captions = sample_captions(sample, meta)
    image = image_bytes(sample) if decodes_lazily(transform) else decode_image(sample)
    return meta, captions, transform(image)


Decoded = tuple[dict[str, Any], list[str], Any]


def decoded_samples(
    samples: Iterable[dict[str, Any]],
    transform: Callable[[Image.Image], Any],
    on_skip: OnSkip | None = None,
) -> Iterator[tuple[dict[str, Any] | None, Decoded | None, int]]:
    """Each decodable sample with its decoding and the count of corrupt samples just before it; those are
    logged, counted and passed to `on_skip`, and a run of them at the end comes last as (None, None, n)."""
    skipped = 0
    for sample in samples:
        try:
            decoded = decode_sample(sample, transform)
        except Exception as e:  # any decoder error means a bad sample, never a dead run
            skipped += 1
            log.warning(
                "skipping corrupt sample %s in %s: %s",
                sample.get("__key__", "?"),
                sample.get("__url__", "?"),
                e,
            )
            if on_skip is not None:
                on_skip(sample)
            continue
        yield sample, decoded, skipped
        skipped = 0
    if skipped:
        yield None, None, skipped


class DecodeOrSkip:
    """WebDataset stage: decode, transform and pick a caption; tag survivors with how many were skipped.

    `caption_augment` (train only) rewrites the picked caption with the same seeded RNG that picked it,
    so a resumed epoch replays the same wordings."""

    def __init__(
        self,
        transform: Callable[[Image.Image], torch.Tensor],
        random_caption: bool,
        caption_augment: CaptionTransform | None = None,
    ) -> None:
        self.transform = transform
        self.random_caption = random_caption
        self.caption_augment = caption_augment

    def __call__(
        self, samples: Iterable[dict[str, Any]], on_skip: OnSkip | None = None
    ) -> Iterator[dict[str, Any]]:
        """Decoded samples; each undecodable one is logged, counted in the next survivor and passed to
        `on_skip`."""
        rng = random.Random(torch.initial_seed())
        for sample, decoded, skipped in decoded_samples(samples, self.transform, on_skip):
            if decoded is None:
                log.warning("%d corrupt samples skipped at the end of this worker's shards", skipped)
                continue
            meta, captions, image = decoded
            caption = rng.choice(captions) if self.random_caption else captions[0]
            if self.caption_augment is not None:
                caption = self.caption_augment(caption, rng)
            product = str(meta.get("product_id", sample.get("__key__", "?")))
            yield {"image": image, "caption": caption, "product": product_key(product), "skipped": skipped}


class CollateWithTokenizer:
    """Stack images and tokenize the whole batch's captions in one call (faster than per sample)."""

    def __init__(self, tokenizer: Callable[[list[str]], torch.Tensor]) -> None:
        self.tokenizer = tokenizer

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Tensors for the model plus the chosen captions as strings, which concept losses match against,
        and as int64 keys, which product-aware losses compare across ranks."""
        captions = [s["caption"] for s in samples]
        return {
            "image": stack_images([s["image"] for s in samples]),
            "text": self.tokenizer(captions),
            "caption": captions,
            "caption_key": torch.tensor([caption_key(c) for c in captions], dtype=torch.int64),
            "product": torch.tensor([s["product"] for s in samples], dtype=torch.int64),
            "skipped": torch.tensor(sum(s["skipped"] for s in samples), dtype=torch.int64),
        }
