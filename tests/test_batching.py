"""data.batching: what each composition guarantees about a batch, and that corrupt samples still count."""

from __future__ import annotations

import collections
import logging
import random
from pathlib import Path

import pytest
import torch
from helpers.shard_samples import jpeg_bytes, shard_sample, write_split

from fashion_clip.data.batching import (
    KeyedSample,
    category_hard,
    keyed_samples,
    make_composer,
    product_unique,
)
from fashion_clip.data.datamodule import WebDatasetDataModule
from fashion_clip.data.samples import product_key
from fashion_clip.errors import ConfigError

CATEGORIES = ("dress", "jacket", "boots", "scarf", "hat", "skirt")


def keyed(n: int, views: int = 1, seed: int = 0, category: bool = True) -> list[KeyedSample]:
    """`n` samples of `n // views` products (views adjacent, as shards store them), categories at random."""
    rng = random.Random(seed)
    products = [f"p{i // views}" for i in range(n)]
    kinds = {p: rng.choice(CATEGORIES) for p in products}
    return [
        KeyedSample({"__key__": f"{i:04d}"}, p, kinds[p] if category else None, 0)
        for i, p in enumerate(products)
    ]


def shuffled(items: list[KeyedSample], seed: int = 1) -> list[KeyedSample]:
    """A shuffle buffer's effect: a product's views end up near, not next to, each other."""
    window = random.Random(seed)
    out = list(items)
    for start in range(0, len(out), 24):
        block = out[start : start + 24]
        window.shuffle(block)
        out[start : start + 24] = block
    return out


def top_two_share(batch: list[KeyedSample]) -> float:
    """Share of a batch taken by its two most common categories."""
    counts = collections.Counter(item.category for item in batch)
    return sum(c for _, c in counts.most_common(2)) / len(batch)


def test_product_unique_batches_hold_one_view_per_product_and_lose_nothing() -> None:
    samples = shuffled(keyed(600, views=5))
    batches = list(product_unique(samples, 16, random.Random(0)))
    repeats = [b for b in batches if len({item.product for item in b}) < len(b)]
    random_repeats = [
        samples[i : i + 16] for i in range(0, 592, 16) if len({s.product for s in samples[i : i + 16]}) < 16
    ]
    assert len(random_repeats) > len(batches) // 2  # views are close together in the stream
    assert [batches.index(b) for b in repeats] == [len(batches) - 2, len(batches) - 1]  # the tail only
    used = collections.Counter(item.sample["__key__"] for b in batches for item in b)
    assert max(used.values()) == 1
    assert len(samples) - sum(used.values()) < 16


def test_category_hard_batches_come_from_one_or_two_categories() -> None:
    samples = keyed(3000, views=2)
    batches = list(category_hard(samples, 32, random.Random(0), pool_size=512))
    chunks = [samples[i : i + 32] for i in range(0, len(samples) - 31, 32)]
    hard = sum(map(top_two_share, batches)) / len(batches)
    plain = sum(map(top_two_share, chunks)) / len(chunks)
    assert hard > 0.9 > 0.6 > plain
    used = [item.sample["__key__"] for b in batches for item in b]
    assert len(set(used)) == len(used) > len(samples) - 32


def test_category_hard_without_categories_warns_and_batches_everything(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        batches = list(category_hard(keyed(100, category=False), 10, random.Random(0), pool_size=40))
    assert "has no 'category'" in caplog.text and caplog.text.count("has no 'category'") == 1
    assert sum(map(len, batches)) == 100


def test_compositions_are_seeded() -> None:
    samples = keyed(400, views=2)
    first = [[i.sample["__key__"] for i in b] for b in category_hard(samples, 16, random.Random(3), 128)]
    again = [[i.sample["__key__"] for i in b] for b in category_hard(samples, 16, random.Random(3), 128)]
    other = [[i.sample["__key__"] for i in b] for b in category_hard(samples, 16, random.Random(4), 128)]
    assert first == again != other


@pytest.mark.parametrize(
    ("batching", "pool", "message"),
    [("hard", None, "data.batching='hard'"), ("category_hard", 8, "data.batching_pool=8")],
)
def test_bad_batching_options_name_the_key(batching, pool, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_composer(batching, 16, pool)


def test_keyed_samples_skip_and_count_corrupt_ones(caplog) -> None:
    samples = [
        shard_sample(0, jpeg_bytes((1, 2, 3)), "a", "dress"),
        shard_sample(1, b"not a jpeg", "b", "dress"),
        {"__key__": "2", "jpg": jpeg_bytes((0, 0, 0)), "json": b"{broken"},
        shard_sample(3, jpeg_bytes((1, 2, 3)), "c", "hat"),
    ]
    with caplog.at_level(logging.WARNING):
        kept = list(keyed_samples(samples))
    assert [(k.product, k.category, k.skipped) for k in kept] == [("a", "dress", 0), ("c", "hat", 2)]
    assert "skipping corrupt sample 000000001" in caplog.text


def train_module(
    tmp_path: Path, samples: list[dict], clip, batching: str, shuffle_buffer: int
) -> WebDatasetDataModule:
    """A data module of batch 4, no workers, over `samples` written (once) as shards of 10."""
    split = tmp_path / "train"
    if not split.is_dir():
        write_split(split, samples, shard_size=10)
    return WebDatasetDataModule(
        train=str(split),
        batch_size=4,
        num_workers=0,
        batching=batching,
        shuffle_buffer=shuffle_buffer,
        train_transform=clip.train_transform,
        val_transform=clip.val_transform,
        tokenizer=clip.tokenizer,
    )


@pytest.mark.parametrize("batching", ["product_unique", "category_hard"])
def test_composed_train_batches_are_full_and_count_corrupt_samples(
    tmp_path: Path, tiny_clip, batching
) -> None:
    samples = [shard_sample(i, jpeg_bytes((i, 0, 0)), f"p{i // 3}", CATEGORIES[i % 2]) for i in range(30)]
    samples[4]["jpg"] = b"truncated"
    samples[17]["json"] = b"{"
    loader = train_module(tmp_path, samples, tiny_clip, batching, shuffle_buffer=1).train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) and all(len(b["image"]) == 4 for b in batches)
    assert sum(int(b["skipped"]) for b in batches) == 2
    seen = [p for b in batches for p in b["product"].tolist()]
    assert len(seen) == 28 // 4 * 4
    assert product_key("p1") not in seen or seen.count(product_key("p1")) <= 3
    if batching == "product_unique":
        assert all(len(set(b["product"].tolist())) == 4 for b in batches[:-1])
    assert all(b["caption_key"].dtype == torch.int64 for b in batches)


@pytest.mark.parametrize("batching", ["random", "product_unique", "category_hard"])
def test_ranks_split_composed_epochs_without_overlap(tmp_path: Path, tiny_clip, batching) -> None:
    """Each rank composes from its own shards: two ranks together see each sample at most once, and
    both stop at the same epoch length."""
    samples = [
        shard_sample(i, jpeg_bytes((i, 0, 0)), f"p{i // 3}", CATEGORIES[(i // 3) % 3]) for i in range(60)
    ]
    catalogue = collections.Counter(product_key(f"p{i // 3}") for i in range(60))
    seen: collections.Counter[int] = collections.Counter()
    lengths = []
    for rank in (0, 1):
        module = train_module(tmp_path, samples, tiny_clip, batching, shuffle_buffer=8)
        module._rank, module._world_size = (lambda r=rank: r), (lambda: 2)
        loader = module.train_dataloader()
        batches = list(loader)
        assert len(batches) == len(loader)
        lengths.append(len(loader))
        seen.update(p for b in batches for p in b["product"].tolist())
    assert lengths[0] == lengths[1] == 7  # 30 samples per rank, at most 3 left in a partial batch
    assert not seen - catalogue
    assert seen.total() == 2 * 7 * 4
