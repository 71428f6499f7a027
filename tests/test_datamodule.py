"""The WebDataset data module on shards made here: specs, captions, epoch sizes and corrupt samples."""

from __future__ import annotations

import pytest
import torch
from helpers.shard_samples import jpeg_bytes, shard_sample, write_split

from fashion_clip.data.datamodule import WebDatasetDataModule, every_nth
from fashion_clip.data.manifest import read_manifest
from fashion_clip.data.samples import product_key
from fashion_clip.data.shard_spec import count_samples, resolve_shards


def _module(tiny_clip, **kwargs) -> WebDatasetDataModule:
    return WebDatasetDataModule(
        train_transform=tiny_clip.train_transform,
        val_transform=tiny_clip.val_transform,
        tokenizer=tiny_clip.tokenizer,
        num_workers=0,
        **kwargs,
    )


def _batches(loader) -> list[dict]:
    return list(iter(loader))


def test_corrupt_samples_are_skipped_and_counted(tmp_path, tiny_clip) -> None:
    good = [
        shard_sample(i, jpeg_bytes((10 * i, 0, 0)), f"p{i}", captions=[f"red dress {i}"]) for i in range(6)
    ]
    truncated = shard_sample(6, jpeg_bytes((0, 0, 200))[:40], "p6", captions=["blue dress"])
    not_an_image = shard_sample(7, b"this is not a jpeg", "p7", captions=["green dress"])
    no_caption = shard_sample(8, jpeg_bytes((0, 200, 0)), "p8", captions=["  "])
    split = write_split(
        tmp_path / "val", [good[0], truncated, *good[1:4], not_an_image, no_caption, *good[4:]], shard_size=4
    )
    dm = _module(tiny_clip, val=str(split), eval_batch_size=3)
    batches = _batches(dm.val_dataloader())
    assert sum(len(b["image"]) for b in batches) == 6
    assert sum(int(b["skipped"]) for b in batches) == 3
    assert batches[0]["image"].shape[1:] == (3, 64, 64)
    assert batches[0]["text"].shape[1] == 32


def test_validation_uses_first_caption_and_training_samples_all(tmp_path, tiny_clip) -> None:
    captions = ["first caption", "second caption", "third caption"]
    split = write_split(
        tmp_path / "s",
        [shard_sample(i, jpeg_bytes((0, 0, 0)), "p", captions=captions) for i in range(16)],
        shard_size=4,
    )
    dm = _module(
        tiny_clip, train=str(split), val=str(split), batch_size=16, eval_batch_size=16, shuffle_buffer=1
    )
    val_text = _batches(dm.val_dataloader())[0]["text"]
    first = tiny_clip.tokenizer(["first caption"])[0]
    assert all(torch.equal(row, first) for row in val_text)
    seen = {tuple(row.tolist()) for row in _batches(dm.train_dataloader())[0]["text"]}
    assert seen == {tuple(tiny_clip.tokenizer([c])[0].tolist()) for c in captions}


def test_product_ids_travel_as_stable_int64(tmp_path, tiny_clip) -> None:
    split = write_split(
        tmp_path / "s",
        [shard_sample(i, jpeg_bytes((0, 0, 0)), f"prod-{i % 2}", captions=["c"]) for i in range(4)],
        shard_size=4,
    )
    batch = _batches(_module(tiny_clip, val=str(split), eval_batch_size=4).val_dataloader())[0]
    assert batch["product"].tolist() == [product_key(f"prod-{i % 2}") for i in range(4)]
    assert batch["product"].dtype == torch.int64


def test_shard_specs_brace_glob_directory_and_list(tmp_path) -> None:
    split = write_split(
        tmp_path / "train",
        [shard_sample(i, jpeg_bytes((0, 0, 0)), "p", captions=["c"]) for i in range(10)],
        shard_size=4,
    )
    shards = sorted(str(p) for p in split.glob("*.tar"))
    assert len(shards) == 3
    assert resolve_shards(str(split)) == shards
    assert resolve_shards(str(split / "*.tar")) == shards
    assert resolve_shards(str(split / read_manifest(split).pattern)) == shards
    assert resolve_shards([shards[0], shards[2]]) == [shards[0], shards[2]]
    assert count_samples(str(split)) == 10
    assert count_samples(str(split / "*.tar")) is None


def test_shard_spec_matching_nothing_names_the_spec_and_split(tmp_path) -> None:
    spec = str(tmp_path / "missing-{000000..000003}.tar")
    with pytest.raises(FileNotFoundError, match="data.val") as err:
        resolve_shards(spec, "val")
    assert spec in str(err.value)


def test_epoch_length_from_manifest_and_resampled_budget(tmp_path, tiny_clip) -> None:
    split = write_split(
        tmp_path / "train",
        [shard_sample(i, jpeg_bytes((0, 0, 0)), f"p{i}", captions=["c"]) for i in range(20)],
        shard_size=4,
    )
    assert len(_module(tiny_clip, train=str(split), batch_size=4).train_dataloader()) == 5
    resampled = _module(tiny_clip, train=str(split), batch_size=4, resampled=True, samples_per_epoch=32)
    loader = resampled.train_dataloader()
    assert len(loader) == 8
    assert len(_batches(loader)) == 8


def test_resampled_without_budget_or_manifest_is_refused(tmp_path, tiny_clip) -> None:
    with pytest.raises(ValueError, match="samples_per_epoch"):
        _module(tiny_clip, train=str(tmp_path / "*.tar"), resampled=True)


def test_unset_split_names_the_config_key(tiny_clip) -> None:
    with pytest.raises(ValueError, match="data.test is not set"):
        _module(tiny_clip).test_dataloader()


def test_eval_samples_are_split_across_ranks_without_gaps_or_overlap() -> None:
    samples = [{"__key__": str(i)} for i in range(7)]
    parts = [list(every_nth(iter(samples), start=rank, step=3)) for rank in range(3)]
    assert all(parts), "every rank must get samples even from a single shard"
    keys = sorted(int(s["__key__"]) for part in parts for s in part)
    assert keys == list(range(7))


@pytest.mark.slow
def test_declared_epoch_length_never_exceeds_what_the_workers_yield(tmp_path, tiny_clip) -> None:
    """Each worker drops its own last partial batch; an epoch shorter than its declared length ends
    before Lightning runs validation, so the length must be a lower bound in every epoch."""
    samples = [shard_sample(i, jpeg_bytes((i, 0, 0)), f"p{i}", captions=["c"]) for i in range(21)]
    split = write_split(tmp_path / "train", samples, shard_size=5)  # shards of 5, 5, 5, 5, 1
    module = _module(tiny_clip, train=str(split), batch_size=4)
    module.num_workers = 2
    loader = module.train_dataloader()
    yielded = [len(_batches(loader)) for _ in range(3)]
    assert yielded == [len(loader)] * 3
    assert len(loader) >= 21 // 4 - 1
