"""Search an index: a text or image query turned into the unit-norm embedding the index is searched
with, exact inner-product top-n over the index's image rows (torch by default, FAISS for large indexes),
and the image hits grouped into top-k products, a product scored by its best image.

faiss is optional: it is imported only when chosen, so the torch path runs without it installed."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.models.factory import ClipBundle
from fashion_clip.retrieval.embedding import ImageRecord, autocast
from fashion_clip.retrieval.index_file import IndexData


def load_query_image(path: str | Path) -> Image.Image:
    """The query image decoded in full now, so a bad file fails before the model is built."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingInputError(f"query image '{path}' does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError or SyntaxError on bad files
        raise UserError(
            f"cannot decode query image '{path}' ({type(e).__name__}: {e}): give a JPEG, PNG or WebP file"
        ) from e


@torch.inference_mode()
def encode_text_query(bundle: ClipBundle, text: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit-norm float32 embedding of one text query, on the CPU."""
    if not text.strip():
        raise ConfigError("the text query is empty: give words to search for, or --image PATH")
    device = torch.device(device)
    tokens = bundle.tokenizer([text]).to(device)
    with autocast(device):
        return bundle.model.encode_text(tokens, normalize=True)[0].float().cpu()


@torch.inference_mode()
def encode_image_query(
    bundle: ClipBundle, image: Image.Image, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Unit-norm float32 embedding of one query image, preprocessed as the index's images were."""
    device = torch.device(device)
    pixels = bundle.val_transform(image).unsqueeze(0).to(device)
    with autocast(device):
        return bundle.model.encode_image(pixels, normalize=True)[0].float().cpu()


BACKENDS: tuple[str, ...] = ("auto", "torch", "faiss")
FAISS_MIN_ROWS = 100_000
CHUNK_ROWS = 65_536


class ImageSearcher(Protocol):
    """Anything that returns the n best rows for a unit-norm query, best first."""

    def top_images(self, query: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class TorchSearcher:
    """Brute-force matmul + top-k a chunk of rows at a time, so the float32 upcast stays small."""

    def __init__(
        self, embeddings: torch.Tensor, device: torch.device | str = "cpu", chunk_rows: int = CHUNK_ROWS
    ):
        self.embeddings = embeddings.to(device)
        self.chunk_rows = chunk_rows

    def top_images(self, query: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and row numbers of the n best rows (float32 on the CPU), best first."""
        query = query.to(self.embeddings.device, torch.float32)
        values, rows = [], []
        for start in range(0, self.embeddings.shape[0], self.chunk_rows):
            scores = self.embeddings[start : start + self.chunk_rows].float() @ query
            best = scores.topk(min(n, scores.shape[0]))
            values.append(best.values)
            rows.append(best.indices + start)
        merged = torch.cat(values)
        best = merged.topk(min(n, merged.shape[0]))
        return best.values.cpu(), torch.cat(rows)[best.indices].cpu()


def import_faiss() -> ModuleType:
    """The faiss module, or an error telling the user how to install it."""
    try:
        return importlib.import_module("faiss")
    except ImportError as e:
        raise ConfigError(
            "--backend faiss needs the faiss package: pip install faiss-cpu (or faiss-gpu), "
            "or use --backend torch"
        ) from e


class FaissSearcher:
    """faiss.IndexFlatIP over the rows: exact like the torch path, faster on very large indexes."""

    def __init__(self, embeddings: torch.Tensor, chunk_rows: int = CHUNK_ROWS):
        faiss = import_faiss()
        self.index = faiss.IndexFlatIP(embeddings.shape[1])
        for chunk in embeddings.split(chunk_rows):
            self.index.add(np.ascontiguousarray(chunk.float().numpy()))

    def top_images(self, query: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and row numbers of the n best rows, best first."""
        scores, rows = self.index.search(query.reshape(1, -1).float().cpu().numpy(), n)
        return torch.from_numpy(scores[0]), torch.from_numpy(rows[0]).long()


def faiss_available() -> bool:
    """Whether faiss is installed, found without importing it."""
    return importlib.util.find_spec("faiss") is not None


def choose_backend(requested: str, rows: int, faiss_min_rows: int = FAISS_MIN_ROWS) -> str:
    """`auto` means FAISS only for indexes above `faiss_min_rows` rows and only when it is installed."""
    if requested not in BACKENDS:
        raise ConfigError(f"backend={requested!r} is not one of {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    return "faiss" if rows > faiss_min_rows and faiss_available() else "torch"


def open_searcher(
    embeddings: torch.Tensor,
    backend: str = "auto",
    faiss_min_rows: int = FAISS_MIN_ROWS,
    device: torch.device | str = "cpu",
) -> ImageSearcher:
    """The searcher for `backend` over these rows (built once, then queried many times)."""
    if choose_backend(backend, embeddings.shape[0], faiss_min_rows) == "faiss":
        return FaissSearcher(embeddings)
    return TorchSearcher(embeddings, device)


@dataclass(frozen=True)
class ProductHit:
    """One result: a product, its best-matching image (index row and metadata) and that image's score."""

    rank: int
    score: float
    row: int
    record: ImageRecord


def first_per_product(
    records: list[ImageRecord], scores: torch.Tensor, rows: torch.Tensor, k: int
) -> list[ProductHit]:
    """Walk image hits best first and keep each product's first (hence best) image, up to k products."""
    hits: list[ProductHit] = []
    seen: set[str] = set()
    for score, row in zip(scores.tolist(), rows.tolist(), strict=True):
        record = records[row]
        if record.product_id in seen:
            continue
        seen.add(record.product_id)
        hits.append(ProductHit(len(hits) + 1, score, row, record))
        if len(hits) == k:
            break
    return hits


def search(
    index: IndexData, query_features: torch.Tensor, k: int, searcher: ImageSearcher | None = None
) -> list[ProductHit]:
    """Exact top-k products (fewer when the index has fewer) for one unit-norm query embedding.

    The best k x (most images of any product) images always contain k distinct products, and each
    product's best image comes before any image of a product outside them, so grouping them is exact.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    query = query_features.reshape(-1)
    if query.shape[0] != index.embeddings.shape[1]:
        raise ConfigError(
            f"query embedding has {query.shape[0]} dimensions, the index {index.embeddings.shape[1]}: "
            f"use the model the index was built with"
        )
    searcher = searcher or TorchSearcher(index.embeddings)
    scores, rows = searcher.top_images(query, min(len(index), k * index.max_images_per_product))
    return first_per_product(index.records, scores, rows, k)
