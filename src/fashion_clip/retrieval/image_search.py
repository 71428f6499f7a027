"""Exact inner-product top-n over an index's image rows: torch by default, FAISS for large indexes.

faiss is optional: it is imported only when chosen, so the torch path runs without it installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Protocol

import numpy as np
import torch

from fashion_clip.errors import ConfigError

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
