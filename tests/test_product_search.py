"""Exact product search: torch and FAISS backends against a brute-force ranking, and the backend choice."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import pytest
import torch
from helpers.search_index import brute_force_products, synthetic_index

from fashion_clip.errors import ConfigError
from fashion_clip.retrieval import search as image_search
from fashion_clip.retrieval.search import FaissSearcher, TorchSearcher, choose_backend, open_searcher, search

# products with 1 to 7 images, so grouping (and the k x max-images bound) matters
ROWS_PER_PRODUCT = [1 + (i * 5) % 7 for i in range(60)]


class FakeIndexFlatIP:
    """numpy stand-in for faiss.IndexFlatIP, to test the FAISS path where faiss is not installed."""

    def __init__(self, dim: int) -> None:
        self.rows = np.zeros((0, dim), dtype=np.float32)

    def add(self, x: np.ndarray) -> None:
        assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
        self.rows = np.vstack([self.rows, x])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self.rows.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), order


@pytest.fixture
def fake_faiss(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("faiss")
    module.__spec__ = importlib.machinery.ModuleSpec("faiss", None)
    module.IndexFlatIP = FakeIndexFlatIP
    monkeypatch.setitem(sys.modules, "faiss", module)
    return module


@pytest.fixture
def no_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError, find_spec -> None


def _queries(dim: int, n: int = 5) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(n, dim, generator=torch.Generator().manual_seed(1)), dim=1
    )


@pytest.mark.parametrize("chunk_rows", [7, 64, 100_000])
@pytest.mark.parametrize("k", [1, 5, 60, 200])
def test_torch_search_equals_brute_force_products(chunk_rows: int, k: int) -> None:
    index = synthetic_index(ROWS_PER_PRODUCT)
    searcher = TorchSearcher(index.embeddings, chunk_rows=chunk_rows)
    for query in _queries(index.embeddings.shape[1]):
        hits = search(index, query, k, searcher)
        expected = brute_force_products(index, query, k)
        assert [h.record.product_id for h in hits] == [pid for pid, _ in expected]
        assert [h.score for h in hits] == pytest.approx([s for _, s in expected], abs=1e-5)
        assert [h.rank for h in hits] == list(range(1, len(expected) + 1))
        for hit in hits:  # the shown image is the product's best one
            assert index.records[hit.row].product_id == hit.record.product_id
            assert float(index.embeddings[hit.row].float() @ query) == pytest.approx(hit.score, abs=1e-5)


def test_fewer_products_than_k_returns_each_product_once() -> None:
    index = synthetic_index([3, 2, 4])
    hits = search(index, _queries(32)[0], 10)
    assert sorted(h.record.product_id for h in hits) == ["p0", "p1", "p2"]


def test_k_below_one_and_wrong_query_size_are_errors() -> None:
    index = synthetic_index([1, 2])
    with pytest.raises(ConfigError, match="k must be at least 1"):
        search(index, _queries(32)[0], 0)
    with pytest.raises(ConfigError, match="16 dimensions, the index 32"):
        search(index, _queries(16)[0], 1)


def test_faiss_backend_gives_the_torch_results(fake_faiss: types.ModuleType) -> None:
    index = synthetic_index(ROWS_PER_PRODUCT)
    faiss_searcher = open_searcher(index.embeddings, "faiss")
    assert isinstance(faiss_searcher, FaissSearcher)
    for query in _queries(index.embeddings.shape[1]):
        by_faiss = search(index, query, 8, faiss_searcher)
        by_torch = search(index, query, 8, TorchSearcher(index.embeddings))
        assert [(h.row, h.record.product_id) for h in by_faiss] == [
            (h.row, h.record.product_id) for h in by_torch
        ]
        assert [h.score for h in by_faiss] == pytest.approx([h.score for h in by_torch], abs=1e-5)


def test_auto_uses_faiss_only_when_installed_and_the_index_is_large(fake_faiss: types.ModuleType) -> None:
    assert choose_backend("auto", rows=1_001, faiss_min_rows=1_000) == "faiss"
    assert choose_backend("auto", rows=1_000, faiss_min_rows=1_000) == "torch"
    assert choose_backend("torch", rows=10**9) == "torch"
    assert isinstance(
        open_searcher(synthetic_index([2, 2]).embeddings, "auto", faiss_min_rows=1), FaissSearcher
    )


def test_auto_falls_back_to_torch_without_faiss(no_faiss: None) -> None:
    assert not image_search.faiss_available()
    assert choose_backend("auto", rows=10**9, faiss_min_rows=1) == "torch"
    assert isinstance(
        open_searcher(synthetic_index([2, 2]).embeddings, "auto", faiss_min_rows=0), TorchSearcher
    )


def test_small_indexes_never_look_for_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> bool:
        raise AssertionError("the torch path must not look for faiss")

    monkeypatch.setattr(image_search, "faiss_available", fail)
    monkeypatch.setattr(image_search, "import_faiss", fail)
    index = synthetic_index([2, 3])
    assert choose_backend("auto", rows=len(index), faiss_min_rows=100) == "torch"
    assert len(search(index, _queries(32)[0], 2, open_searcher(index.embeddings, "torch"))) == 2


def test_requesting_faiss_without_it_says_how_to_install(no_faiss: None) -> None:
    with pytest.raises(ConfigError, match="pip install faiss-cpu"):
        open_searcher(synthetic_index([1]).embeddings, "faiss")


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(ConfigError, match="backend='annoy'"):
        choose_backend("annoy", rows=1)
