"""Recall@K must match a brute-force ranking, ignore chunking, and gather correctly across DDP ranks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from helpers.gloo_group import free_port, gloo_group

from fashion_clip.metrics import RetrievalRecall, recall_at_k

KS = (1, 5, 10)
KEYS = [f"{d}_r{k}" for d in ("i2t", "t2i") for k in KS]


def brute_force_recall(
    queries: torch.Tensor, gallery: torch.Tensor, query_ids: torch.Tensor, gallery_ids: torch.Tensor, ks
) -> dict[int, float]:
    """Reference: full similarity matrix, one argsort per query, hit if any same-id item in the top k."""
    sim = F.normalize(queries.float(), dim=-1) @ F.normalize(gallery.float(), dim=-1).T
    result = {}
    for k in ks:
        hits = 0
        for i in range(sim.shape[0]):
            top = torch.argsort(sim[i], descending=True)[:k]
            hits += int((gallery_ids[top] == query_ids[i]).any())
        result[k] = hits / sim.shape[0]
    return result


def catalogue(seed: int = 0, products: int = 20, dim: int = 16) -> tuple[torch.Tensor, ...]:
    """Random (image, caption) pairs with 1-4 images per product, each caption near its product."""
    g = torch.Generator().manual_seed(seed)
    per_product = torch.randint(1, 5, (products,), generator=g)
    ids = torch.repeat_interleave(torch.arange(products) * 7 + 3, per_product)
    centres = torch.randn(products, dim, generator=g)
    centre_rows = torch.repeat_interleave(centres, per_product, dim=0)
    images = centre_rows + 1.5 * torch.randn(ids.shape[0], dim, generator=g)
    texts = centre_rows + 1.5 * torch.randn(ids.shape[0], dim, generator=g)
    return images, texts, ids


def expected_metric(images: torch.Tensor, texts: torch.Tensor, ids: torch.Tensor) -> dict[str, float]:
    """What RetrievalRecall should report, from the brute-force reference in both directions."""
    i2t = brute_force_recall(images, texts, ids, ids, KS)
    t2i = brute_force_recall(texts, images, ids, ids, KS)
    out = {f"i2t_r{k}": v for k, v in i2t.items()} | {f"t2i_r{k}": v for k, v in t2i.items()}
    out["mean_recall"] = sum(out.values()) / len(out)
    return out


def unit(angles_deg: list[float]) -> torch.Tensor:
    """2-D unit vectors at the given angles, so nearest neighbours can be read off by eye."""
    a = torch.tensor(angles_deg) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_with_product_duplicates(seed: int) -> None:
    images, texts, ids = catalogue(seed)
    assert ids.unique().numel() < ids.numel()
    ks = (1, 2, 5, 10)
    got = recall_at_k(images, texts, ids, ids, ks=ks)
    want = brute_force_recall(images, texts, ids, ids, ks)
    assert set(got) == set(ks)
    for k in ks:
        assert got[k].item() == pytest.approx(want[k], abs=1e-6)
    assert 0.0 < got[1].item() < got[10].item() < 1.0


def test_query_and_gallery_ids_may_differ() -> None:
    images, texts, ids = catalogue(3)
    got = recall_at_k(images[:10], texts, ids[:10], ids, ks=(1, 3))
    want = brute_force_recall(images[:10], texts, ids[:10], ids, (1, 3))
    assert {k: v.item() for k, v in got.items()} == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 7, 10_000])
def test_chunking_does_not_change_result(chunk_size: int) -> None:
    images, texts, ids = catalogue(4)
    reference = recall_at_k(images, texts, ids, ids, ks=KS, chunk_size=images.shape[0])
    chunked = recall_at_k(images, texts, ids, ids, ks=KS, chunk_size=chunk_size)
    for k in KS:
        assert torch.equal(chunked[k], reference[k])


def test_hand_made_case_counts_same_product_not_diagonal() -> None:
    ids = torch.tensor([0, 0, 1, 1])
    images = unit([0, 90, 180, 270])
    texts = unit([100, 10, 265, 40])
    i2t = recall_at_k(images, texts, ids, ids, ks=(1, 2, 3))
    t2i = recall_at_k(texts, images, ids, ids, ks=(1, 2, 3))
    diagonal = recall_at_k(images, texts, torch.arange(4), torch.arange(4), ks=(1,))
    assert {k: v.item() for k, v in i2t.items()} == {1: 0.75, 2: 1.0, 3: 1.0}
    assert {k: v.item() for k, v in t2i.items()} == {1: 0.75, 2: 0.75, 3: 1.0}
    assert diagonal[1].item() == 0.0


def test_all_hits_at_one_when_each_caption_sits_on_a_sibling_image() -> None:
    ids = torch.tensor([5, 5, 9, 9])
    images = unit([0, 90, 180, 270])
    texts = unit([91, 1, 271, 181])
    assert recall_at_k(images, texts, ids, ids, ks=(1,))[1].item() == 1.0
    assert recall_at_k(images, texts, torch.arange(4), torch.arange(4), ks=(1,))[1].item() == 0.0


def test_k_larger_than_gallery_counts_whole_gallery() -> None:
    images, texts, ids = catalogue(5, products=3)
    got = recall_at_k(images, texts, ids, ids, ks=(1, 1000))
    assert got[1000].item() == 1.0


def test_low_precision_inputs_use_float32_similarity() -> None:
    images, texts, ids = catalogue(6)
    got = recall_at_k(images.bfloat16(), texts.bfloat16(), ids, ids, ks=KS)
    want = brute_force_recall(images.bfloat16().float(), texts.bfloat16().float(), ids, ids, KS)
    for k in KS:
        assert got[k].dtype == torch.float32
        assert got[k].item() == pytest.approx(want[k], abs=1e-6)


def test_metric_matches_reference_and_accumulates_over_updates() -> None:
    images, texts, ids = catalogue(7)
    single = RetrievalRecall(ks=KS)
    single.update(images, texts, ids)
    split = RetrievalRecall(ks=KS, chunk_size=5)
    for rows in torch.arange(ids.numel()).split([3, 1, 11, ids.numel() - 15]):
        split.update(images[rows], texts[rows], ids[rows])
    one, many = single.compute(), split.compute()
    assert list(one) == [*KEYS, "mean_recall"]
    assert {k: v.item() for k, v in many.items()} == {k: v.item() for k, v in one.items()}
    assert {k: v.item() for k, v in one.items()} == pytest.approx(
        expected_metric(images, texts, ids), abs=1e-6
    )


def test_metric_keys_follow_ks() -> None:
    images, texts, ids = catalogue(8)
    metric = RetrievalRecall(ks=(2, 3))
    metric.update(images, texts, ids)
    assert list(metric.compute()) == ["i2t_r2", "i2t_r3", "t2i_r2", "t2i_r3", "mean_recall"]


def test_metric_stores_detached_float32() -> None:
    images, texts, ids = catalogue(9)
    metric = RetrievalRecall()
    metric.update(images.half().requires_grad_(), texts.bfloat16(), ids.int())
    assert all(t.dtype == torch.float32 and not t.requires_grad for t in metric.image_features)
    assert metric.text_features[0].dtype == torch.float32
    assert metric.product_ids[0].dtype == torch.int64
    assert 0.0 <= metric.compute()["mean_recall"].item() <= 1.0


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric RetrievalRecall was called before")
def test_compute_without_samples_raises() -> None:
    with pytest.raises(ValueError, match="validation split is empty"):
        RetrievalRecall().compute()


def test_update_with_mismatched_lengths_raises() -> None:
    images, texts, ids = catalogue(10)
    with pytest.raises(ValueError, match="image_features=5, text_features=4, product_ids=5"):
        RetrievalRecall().update(images[:5], texts[:4], ids[:5])


def test_bad_ks_and_chunk_size_raise() -> None:
    images, texts, ids = catalogue(11)
    with pytest.raises(ValueError, match="ks"):
        RetrievalRecall(ks=())
    with pytest.raises(ValueError, match="chunk_size"):
        recall_at_k(images, texts, ids, ids, chunk_size=0)


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, world_size, port):
        images, texts, ids = catalogue(12)
        mine = torch.arange(rank, ids.numel(), world_size)
        metric = RetrievalRecall(ks=KS, chunk_size=4)
        for rows in mine.split(5):
            metric.update(images[rows], texts[rows], ids[rows])
        result = {k: v.item() for k, v in metric.compute().items()}
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.slow
@pytest.mark.xdist_group("local_ports")  # a free port for other processes: see conftest.py
def test_ddp_two_ranks_gather_equals_single_process(tmp_path: Path) -> None:
    world_size = 2
    mp.spawn(_ddp_worker, args=(world_size, free_port(), str(tmp_path)), nprocs=world_size, join=True)
    images, texts, ids = catalogue(12)
    metric = RetrievalRecall(ks=KS)
    metric.update(images, texts, ids)
    single = {k: v.item() for k, v in metric.compute().items()}
    assert single == pytest.approx(expected_metric(images, texts, ids), abs=1e-6)
    half = torch.arange(0, ids.numel(), world_size)
    assert expected_metric(images[half], texts[half], ids[half]) != pytest.approx(single, abs=1e-6)
    for rank in range(world_size):
        assert torch.load(tmp_path / f"rank{rank}.pt") == pytest.approx(single, abs=1e-6)
