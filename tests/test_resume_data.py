"""Resuming train data mid-epoch: same epoch, same batches, with or without workers and through Lightning."""

from __future__ import annotations

import collections
import itertools
import json
import logging

import lightning as L
import pytest
import torch
import webdataset as wds
from helpers.train_overrides import TINY_ON_CPU

from fashion_clip.data.batching import BATCHINGS
from fashion_clip.data.datamodule import WebDatasetDataModule
from fashion_clip.data.resumable import StreamPosition
from fashion_clip.data.samples import product_key
from fashion_clip.data.shard_spec import resolve_shards
from fashion_clip.training import train


@pytest.fixture(params=BATCHINGS)
def batching(request) -> str:
    """Every resume guarantee holds for every batch composition."""
    return request.param


@pytest.fixture
def make_module(small_catalogue, tiny_clip, batching):
    """A fresh data module over the small demo catalogue, as a new process would build it."""

    def _make(num_workers: int, **kwargs) -> WebDatasetDataModule:
        return WebDatasetDataModule(
            batching=batching,
            train=str(small_catalogue / "demo" / "train"),
            batch_size=kwargs.pop("batch_size", 16),
            num_workers=num_workers,
            train_transform=tiny_clip.train_transform,
            val_transform=tiny_clip.val_transform,
            tokenizer=tiny_clip.tokenizer,
            seed=7,
            **kwargs,
        )

    return _make


@pytest.fixture
def make_loader(make_module):
    """A fresh train loader over the small demo catalogue."""
    return lambda num_workers, **kwargs: make_module(num_workers, **kwargs).train_dataloader()


def epoch(loader, number: int) -> list[dict]:
    """All batches of epoch `number` from a fresh loader, via the position of its start."""
    loader.load_state_dict({"epoch": number, "batches": 0})
    return list(loader)


def assert_same_batches(got: list[dict], expected: list[dict]) -> None:
    """Images (so augmentations), tokens (so caption choices) and products all equal, batch by batch."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.keys() == b.keys()
        assert a["caption"] == b["caption"]
        assert all(torch.equal(a[key], b[key]) for key in a if key != "caption")


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_fresh_loader_at_a_saved_position_yields_the_rest_of_that_epoch(make_loader, num_workers) -> None:
    uninterrupted = make_loader(num_workers)
    first, reference = list(uninterrupted), list(uninterrupted)
    assert uninterrupted.state_dict()["epoch"] == 2
    assert [b["product"].tolist() for b in first] != [b["product"].tolist() for b in reference]

    resumed = make_loader(num_workers)
    resumed.load_state_dict({"epoch": 1, "batches": 3})
    assert_same_batches(list(resumed), reference[3:])

    for stop in range(1, len(reference)):
        interrupted = make_loader(num_workers)
        interrupted.load_state_dict({"epoch": 1, "batches": 0})
        seen = list(itertools.islice(interrupted, stop))
        resumed = make_loader(num_workers)
        resumed.load_state_dict(interrupted.state_dict())
        assert_same_batches(seen + list(resumed), reference)


def test_uneven_workers_resume_exactly_from_their_own_counts(make_loader) -> None:
    """Shards of unequal size on two workers: one runs out first, which only per-worker counts capture."""
    reference = epoch(make_loader(2, batch_size=8), 0)
    interrupted = make_loader(2, batch_size=8)
    seen = list(itertools.islice(interrupted, len(reference) - 1))
    state = interrupted.state_dict()
    assert state["worker_batches"] != StreamPosition.round_robin(0, state["batches"], 2, 8).worker_batches
    resumed = make_loader(2, batch_size=8)
    resumed.load_state_dict(state)
    assert_same_batches(seen + list(resumed), reference)


def test_each_sample_once_per_epoch_across_workers(small_catalogue, make_loader) -> None:
    urls = resolve_shards(str(small_catalogue / "demo" / "train"))
    samples = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples())
    expected = collections.Counter(product_key(json.loads(s["json"])["product_id"]) for s in samples)
    for number in (0, 1):
        batches = epoch(make_loader(2, batch_size=1, shuffle_buffer=10), number)
        assert collections.Counter(p for b in batches for p in b["product"].tolist()) == expected


def test_finished_epoch_continues_with_the_next_one(make_loader) -> None:
    loader = make_loader(0)
    finished = {"epoch": 0, "batches": len(loader)}
    loader.load_state_dict(finished)
    assert loader.state_dict()["epoch"] == 1
    assert_same_batches(list(loader), epoch(make_loader(0), 1))
    assert loader.state_dict() == StreamPosition.epoch_start(2, 1).as_state()


def test_reloaded_train_loader_and_restored_module_continue_the_data(make_module) -> None:
    module = make_module(0)
    first = module.train_dataloader()
    list(first)
    assert module.train_dataloader().state_dict() == StreamPosition.epoch_start(1, 1).as_state()

    midway = module.train_dataloader()
    seen = list(itertools.islice(midway, 2))
    restored = make_module(0)
    restored.load_state_dict(module.state_dict())
    assert module.state_dict()["train_position"]["batches"] == 2
    assert_same_batches(seen + list(restored.train_dataloader()), epoch(make_module(0).train_dataloader(), 1))


def test_resampled_epochs_are_deterministic_and_resumable(make_loader) -> None:
    options = {"resampled": True, "samples_per_epoch": 96}
    reference = epoch(make_loader(2, **options), 1)
    assert len(reference) == 6
    assert [b["product"].tolist() for b in reference] != [
        b["product"].tolist() for b in epoch(make_loader(2, **options), 2)
    ]
    interrupted = make_loader(2, **options)
    interrupted.load_state_dict({"epoch": 1, "batches": 0})
    seen = list(itertools.islice(interrupted, 4))
    resumed = make_loader(2, **options)
    resumed.load_state_dict(interrupted.state_dict())
    assert_same_batches(seen + list(resumed), reference)


def test_loading_in_the_main_process_leaves_the_training_rng_alone(make_loader) -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    list(make_loader(0))
    assert torch.equal(torch.rand(4), expected)


def test_position_saved_with_other_worker_count_is_spread_round_robin(caplog) -> None:
    saved = StreamPosition(epoch=3, batches=5, worker_batches=[2, 3], worker_samples=[32, 50], next_worker=0)
    with caplog.at_level(logging.WARNING):
        position = StreamPosition.from_state(saved.as_state(), workers=3, batch_size=16)
    assert "saved with 2 data workers and this run has 3" in caplog.text
    assert position == StreamPosition(3, 5, [2, 2, 1], [32, 32, 16], next_worker=2)
    assert StreamPosition.from_state(saved.as_state(), workers=2, batch_size=16) == saved


class RecordBatches(L.Callback):
    """The products of each step's batch, and the data position the fit starts from."""

    def __init__(self) -> None:
        self.products: dict[int, list[int]] = {}
        self.start: dict | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = trainer.train_dataloader.state_dict()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.products[trainer.global_step] = batch["product"].tolist()


def fit(compose_train, catalogue, run_dir, *overrides: str) -> RecordBatches:
    """One `train()` run on the small catalogue, writing to its own run directory."""
    cfg = compose_train(
        *TINY_ON_CPU,
        "data.batch_size=32",
        "test_before_fit=false",
        "test_after_fit=false",
        "trainer.check_val_every_n_epoch=100",
        "callbacks.periodic_checkpoint.every_n_train_steps=4",
        *overrides,
        data_dir=catalogue,
    )
    cfg.paths.output_dir = str(run_dir)
    recorder = RecordBatches()
    train(cfg, [recorder])
    return recorder


@pytest.mark.parametrize("batching", BATCHINGS)
@pytest.mark.slow
def test_lightning_resume_continues_with_the_batch_the_run_would_have_seen(
    compose_train, small_catalogue, tmp_path, batching
) -> None:
    """Epochs of 3 batches: resume from a periodic checkpoint in epoch 1 and from `last.ckpt` of a run
    stopped by max_steps inside epoch 0; both must go on with the uninterrupted run's batches."""
    composed = f"data.batching={batching}"
    uninterrupted = fit(compose_train, small_catalogue, tmp_path / "full", "trainer.max_steps=5", composed)
    assert sorted(uninterrupted.products) == list(range(5))
    fit(compose_train, small_catalogue, tmp_path / "stopped", "trainer.max_steps=2", composed)
    for checkpoint, step, epoch_number, batches in (
        (tmp_path / "full" / "checkpoints" / "step000004.ckpt", 4, 1, 1),
        (tmp_path / "stopped" / "checkpoints" / "last.ckpt", 2, 0, 2),
    ):
        saved = torch.load(checkpoint, weights_only=False)
        position = saved["WebDatasetDataModule"]["train_position"]
        assert (saved["global_step"], position["epoch"], position["batches"]) == (step, epoch_number, batches)
        resume = ("trainer.max_steps=5", f"ckpt_path={checkpoint}", composed)
        resumed = fit(compose_train, small_catalogue, tmp_path / f"resumed-{step}", *resume)
        assert resumed.start == position
        assert resumed.products == {s: p for s, p in uninterrupted.products.items() if s >= step}
