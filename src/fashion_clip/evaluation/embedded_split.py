"""A split embedded once, with the metadata every protocol, export and index needs beside the features."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from fashion_clip.data.samples import product_key


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
