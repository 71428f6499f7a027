"""A split embedded once (its images, then each product's distinct captions, on the model's device),
with the metadata every protocol, export and index needs beside the features."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import open_clip
import torch
from tqdm.auto import tqdm

from fashion_clip.data.catalogue_reader import collate_items
from fashion_clip.data.samples import product_key
from fashion_clip.errors import MissingInputError


@dataclass(frozen=True)
class ImageRecord:
    """Where an image came from and what it shows, so results can be traced back and grouped by product."""

    key: str
    product_id: str
    category: str | None
    caption: str
    source: str

    def to_dict(self) -> dict[str, str | None]:
        """Plain dict for JSON and index files (which must load without fashion_clip classes)."""
        return asdict(self)


@dataclass(frozen=True)
class CaptionRecord:
    """One distinct caption of a product: text queries are deduplicated per product."""

    product_id: str
    text: str


@dataclass
class EmbeddedSplit:
    """Unit-norm float32 features of every image and every distinct (product, caption) of a split."""

    image_features: torch.Tensor
    images: list[ImageRecord]
    caption_features: torch.Tensor
    captions: list[CaptionRecord]
    skipped: int = 0
    # each image's json text fields (colour, material, ...) for attribute search; empty: none were read
    attributes: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.attributes and len(self.attributes) != len(self.images):
            raise ValueError(f"{len(self.attributes)} attribute rows for {len(self.images)} images")
        if self.image_features.shape[0] != len(self.images):
            raise ValueError(f"{self.image_features.shape[0]} image features for {len(self.images)} images")
        if self.caption_features.shape[0] != len(self.captions):
            raise ValueError(
                f"{self.caption_features.shape[0]} caption features for {len(self.captions)} captions"
            )

    @property
    def image_products(self) -> torch.Tensor:
        """Product of each image as int64, the form the recall functions compare."""
        return torch.tensor([product_key(r.product_id) for r in self.images], dtype=torch.int64)

    @property
    def caption_products(self) -> torch.Tensor:
        """Product of each caption as int64, the form the recall functions compare."""
        return torch.tensor([product_key(r.product_id) for r in self.captions], dtype=torch.int64)

    @property
    def num_products(self) -> int:
        """Distinct products among the images, the unit a retrieval hit is counted in."""
        return len({r.product_id for r in self.images})


def product_categories(images: Sequence[ImageRecord]) -> dict[str, str]:
    """Each product's first non-empty category: a caption query belongs to its product's category."""
    categories: dict[str, str] = {}
    for record in images:
        if record.category:
            categories.setdefault(record.product_id, record.category)
    return categories


Tokenizer = Callable[[list[str]], torch.Tensor]


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """fp16 autocast on CUDA, where it halves embedding time; plain fp32 on CPU (emulated bf16 is slower)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.inference_mode()
def embed_texts(
    model: open_clip.CLIP, tokenizer: Tokenizer, texts: list[str], batch_size: int, device: torch.device
) -> torch.Tensor:
    """Unit-norm float32 text features on the CPU, in the order given, tokenized a batch at a time."""
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="embedding: captions", unit="batch"):
        tokens = tokenizer(texts[start : start + batch_size]).to(device)
        with autocast(device):
            chunks.append(model.encode_text(tokens, normalize=True).float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def distinct_captions(items: Iterable[tuple[str, list[str]]]) -> list[CaptionRecord]:
    """Each product's captions once, in first-seen order: duplicates would count one query several times."""
    seen: dict[tuple[str, str], None] = {}
    for product_id, captions in items:
        for caption in captions:
            seen.setdefault((product_id, caption), None)
    return [CaptionRecord(product_id, text) for product_id, text in seen]


@contextlib.contextmanager
def borrowed(model: torch.nn.Module) -> Iterator[None]:
    """Give the model back in the train/eval modes and on the device it came in.

    Training evaluates before and after fitting; Lightning keeps each submodule's train/eval mode,
    so a model left in eval mode would silently train without dropout.
    """
    modes = {m: m.training for m in model.modules()}
    original = next(model.parameters(), torch.empty(0)).device  # an ONNX export's towers hold none
    try:
        yield
    finally:
        model.to(original)
        for module, training in modes.items():
            module.training = training


@torch.inference_mode()
def embed_catalogue(
    model: open_clip.CLIP,
    tokenizer: Tokenizer,
    dataset: torch.utils.data.IterableDataset,
    batch_size: int = 256,
    num_workers: int = 2,
    device: torch.device | str = "cpu",
    with_captions: bool = True,
    description: str = "embedding",
) -> EmbeddedSplit:
    """Image features in file order plus distinct-caption features; an unreadable split fails."""
    device = torch.device(device)
    with borrowed(model):
        model.eval().to(device)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_items
        )
        features, records, attributes, captions, skipped = [], [], [], [], 0
        for batch in tqdm(loader, desc=f"{description}: images", unit="batch"):
            skipped += batch["skipped"]
            if batch["image"] is None:
                continue
            with autocast(device):
                features.append(model.encode_image(batch["image"].to(device), normalize=True).float().cpu())
            for i, key in enumerate(batch["key"]):
                caps = batch["captions"][i]
                records.append(
                    ImageRecord(
                        key, batch["product_id"][i], batch["category"][i], caps[0], batch["source"][i]
                    )
                )
                attributes.append(batch["attributes"][i])
                captions.append((batch["product_id"][i], caps))
        if not records:
            raise MissingInputError(
                f"{description}: the catalogue has no readable image ({skipped} corrupt samples skipped); "
                f"check the split's shard spec or folder"
            )
        caption_records = distinct_captions(captions) if with_captions else []
        texts = [c.text for c in caption_records]
        caption_features = (
            embed_texts(model, tokenizer, texts, batch_size, device)
            if texts
            else torch.zeros(0, features[0].shape[1])
        )
        return EmbeddedSplit(
            torch.cat(features), records, caption_features, caption_records, skipped, attributes
        )
