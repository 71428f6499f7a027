"""Weighted train sources: the mix drawn, epoch length, resume, two ranks, config checks, a CLI-form run."""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from helpers.shard_samples import jpeg_bytes, shard_sample, write_split
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_resume_data import fit

from fashion_clip.data.datamodule import WebDatasetDataModule
from fashion_clip.data.samples import product_key
from fashion_clip.data.shard_spec import shard_sizes
from fashion_clip.data.weighted_sources import (
    is_weighted,
    parse_sources,
    source_mix,
    weighted_draws,
    weighted_shards,
)
from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.preflight import check_shards, preflight

BATCH = 16


def write_source(directory: Path, name: str, count: int, shard_size: int) -> Path:
    """`count` samples of products `<name>0`, `<name>1`, ... in shards of `shard_size`, with a manifest."""
    samples = [
        shard_sample(i, jpeg_bytes((3 * i, 80, 160)), f"{name}{i}", captions=[f"dress {name} {i}"])
        for i in range(count)
    ]
    return write_split(directory, samples, shard_size=shard_size, name=name)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """alpha and beta: 40 samples each, in shards of 2 and of 4; gamma: 80 samples in shards of 20."""
    root = tmp_path_factory.mktemp("sources")
    return {
        "alpha": write_source(root / "alpha", "alpha", 40, 2),
        "beta": write_source(root / "beta", "beta", 40, 4),
        "gamma": write_source(root / "gamma", "gamma", 80, 20),
    }


def weighted(splits: dict[str, Path], **weights: float) -> list[dict]:
    """`data.train` as weighted sources, e.g. `weighted(splits, alpha=3, beta=1)`."""
    return [{"spec": str(splits[name]), "weight": weight} for name, weight in weights.items()]


def make_module(
    tiny_clip, train: list[dict], rank: int = 0, world: int = 1, **kwargs
) -> WebDatasetDataModule:
    """A data module as rank `rank` of `world` sees it (a stand-in trainer says which, as Lightning does)."""
    options = {"resampled": True, "batch_size": BATCH, "num_workers": 0, "shuffle_buffer": 20, "seed": 7}
    module = WebDatasetDataModule(
        train=train,
        train_transform=tiny_clip.train_transform,
        val_transform=tiny_clip.val_transform,
        tokenizer=tiny_clip.tokenizer,
        **{**options, **kwargs},
    )
    module.trainer = SimpleNamespace(world_size=world, global_rank=rank, loggers=[])
    return module


def alpha_share(batches: list[dict]) -> float:
    """The fraction of samples whose product is one of alpha's."""
    alpha = {product_key(f"alpha{i}") for i in range(40)}
    products = [p for batch in batches for p in batch["product"].tolist()]
    return sum(p in alpha for p in products) / len(products)


def epochs(loader, first: int, count: int) -> list[dict]:
    """The batches of `count` whole epochs from epoch `first`."""
    loader.load_state_dict({"epoch": first, "batches": 0})
    return [batch for _ in range(count) for batch in loader]


def assert_identical(got: list[dict], expected: list[dict]) -> None:
    """Two reads gave the same batches: products, captions, tokens and augmented pixels."""
    assert [b["product"].tolist() for b in got] == [b["product"].tolist() for b in expected]
    assert [b["caption"] for b in got] == [b["caption"] for b in expected]
    assert all(
        torch.equal(a["image"], b["image"]) and torch.equal(a["text"], b["text"])
        for a, b in zip(got, expected, strict=True)
    )


def test_draws_give_each_source_weight_times_samples(splits) -> None:
    """alpha x3 (40 samples) and gamma x1 (80): 3*40 / (3*40 + 80) = 60% of the samples are alpha's, whatever
    the shard sizes (2 and 20); unweighted draws would give 33%, weights taken as target shares 75%."""
    sources = parse_sources(weighted(splits, alpha=3, gamma=1), resampled=True)
    urls, weights = weighted_shards(sources)
    size = dict(zip(urls, shard_sizes([str(splits["alpha"]), str(splits["gamma"])]), strict=True))
    drawn = Counter(itertools.islice(weighted_draws(urls, weights, seed=11), 30_000))
    alpha = sum(size[url] * n for url, n in drawn.items() if "/alpha/" in url)
    assert alpha / sum(size[url] * n for url, n in drawn.items()) == pytest.approx(0.6, abs=0.01)
    assert [share.share for share in source_mix(sources)] == pytest.approx([0.6, 0.4])
    assert [share.label for share in source_mix(sources)] == ["0-alpha", "1-gamma"]


def test_three_to_one_mix_over_many_epochs(splits, tiny_clip) -> None:
    """Two sources of 40 samples, weights 3 and 1: three quarters of what training sees is the first's."""
    loader = make_module(tiny_clip, weighted(splits, alpha=3, beta=1)).train_dataloader()
    seen = epochs(loader, 0, 30)
    assert len(seen) == 30 * len(loader)
    assert alpha_share(seen) == pytest.approx(0.75, abs=0.04)


@pytest.mark.parametrize(
    ("options", "world", "expected"),
    [
        ({}, 1, math.ceil(80 / BATCH)),  # by default an epoch is every source's samples once
        ({"samples_per_epoch": 100}, 1, math.ceil(100 / BATCH)),
        ({"samples_per_epoch": 100}, 2, math.ceil(100 / (2 * BATCH))),
        ({"samples_per_epoch": 100, "num_workers": 2}, 1, 2 * math.ceil(100 / (2 * BATCH))),
    ],
)
def test_epoch_length_is_the_budget_over_ranks_and_workers(
    splits, tiny_clip, options, world, expected
) -> None:
    loader = make_module(
        tiny_clip, weighted(splits, alpha=3, beta=1), world=world, **options
    ).train_dataloader()
    assert len(loader) == expected
    if not options.get("num_workers"):
        assert len(list(loader)) == expected


def test_resume_mid_epoch_replays_the_epoch_exactly(splits, tiny_clip) -> None:
    train = weighted(splits, alpha=3, beta=1)
    reference = epochs(make_module(tiny_clip, train).train_dataloader(), 1, 1)
    assert [b["product"].tolist() for b in reference] != [
        b["product"].tolist() for b in epochs(make_module(tiny_clip, train).train_dataloader(), 2, 1)
    ]
    for stop in (1, 3):
        interrupted = make_module(tiny_clip, train)
        loader = interrupted.train_dataloader()
        loader.load_state_dict({"epoch": 1, "batches": 0})
        seen = list(itertools.islice(loader, stop))
        restored = make_module(tiny_clip, train)
        restored.load_state_dict(interrupted.state_dict())  # what a checkpoint carries
        assert interrupted.state_dict()["train_position"]["batches"] == stop
        assert_identical(seen + list(restored.train_dataloader()), reference)


def test_two_ranks_draw_their_own_reproducible_streams(splits, tiny_clip) -> None:
    """Each rank draws shards from its own seed: equal lengths, different samples, the same on a rerun."""
    train = weighted(splits, alpha=3, beta=1)
    ranks = [make_module(tiny_clip, train, rank, world=2).train_dataloader() for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == math.ceil(80 / (2 * BATCH))
    reads = [epochs(loader, 0, 10) for loader in ranks]
    assert [b["product"].tolist() for b in reads[0]] != [b["product"].tolist() for b in reads[1]]
    rerun = epochs(make_module(tiny_clip, train, 1, world=2).train_dataloader(), 0, 2)
    assert_identical(rerun, reads[1][: len(rerun)])
    assert alpha_share(reads[0] + reads[1]) == pytest.approx(0.75, abs=0.06)


def test_mix_is_logged_at_the_start_of_a_fit(splits, tiny_clip, caplog) -> None:
    module = make_module(tiny_clip, [*weighted(splits, alpha=3), {"spec": str(splits["beta"]), "name": "fg"}])
    with caplog.at_level(logging.INFO, logger="fashion_clip.data.weighted_sources"):
        module.setup("fit")
    assert "| 0-alpha | " in caplog.text and "| 3 | 40 | 75.0% |" in caplog.text
    assert "| 1-fg | " in caplog.text and "| 1 | 40 | 25.0% |" in caplog.text


def test_plain_specs_stay_one_unweighted_split(splits) -> None:
    assert not is_weighted(str(splits["alpha"]))
    assert not is_weighted([str(splits["alpha"]), str(splits["beta"])])
    assert is_weighted([str(splits["alpha"]), {"spec": str(splits["beta"]), "weight": 2}])
    bare, mapped = parse_sources([str(splits["alpha"]), {"spec": str(splits["beta"]), "weight": 2}], True)
    assert (bare.weight, mapped.weight) == (1.0, 2.0)


def check(train: list, resampled: bool = True) -> None:
    """The preflight check of a `data.train` list."""
    check_shards(OmegaConf.create({"data": {"train": train, "resampled": resampled}}), ("train",))


@pytest.mark.parametrize("weight", [0, -1, "3", True, float("nan")])
def test_preflight_refuses_a_weight_that_is_not_above_zero(splits, weight) -> None:
    with pytest.raises(ConfigError, match=r"data\.train\[1\]\.weight=.*above 0"):
        check([*weighted(splits, alpha=3), {"spec": str(splits["beta"]), "weight": weight}])


def test_preflight_names_the_source_that_does_not_resolve(splits, tmp_path) -> None:
    missing = str(tmp_path / "nowhere-{000000..000001}.tar")
    with pytest.raises(MissingInputError, match=r"data\.train\[1\]\.spec") as error:
        check([*weighted(splits, alpha=3), {"spec": missing, "weight": 1}])
    assert missing in str(error.value)
    unlisted = tmp_path / "no_manifest"
    unlisted.mkdir()
    with pytest.raises(MissingInputError, match=r"data\.train\[0\]\.spec=.*no_manifest.*no shard manifest"):
        check([{"spec": str(unlisted), "weight": 2}, *weighted(splits, beta=1)])


@pytest.mark.parametrize(
    ("train", "resampled", "message"),
    [
        ([{"spec": "alpha", "weight": 3}], False, "set data.resampled=true"),
        ([{"spec": "alpha", "weigth": 3}], True, r"data\.train\[0\] has unknown keys \['weigth'\]"),
        ([{"weight": 3}], True, r"data\.train\[0\]\.spec is not set"),
        ([{"spec": "alpha"}, 5], True, r"data\.train\[1\]=5"),
    ],
)
def test_preflight_refuses_malformed_sources(train, resampled, message) -> None:
    with pytest.raises(ConfigError, match=message):
        check(train, resampled)


def cli_sources(splits: dict[str, Path]) -> str:
    """The Hydra command-line form: `data.train=[{spec:DIR,weight:3},{spec:DIR,weight:1}]`."""
    return f"data.train=[{{spec:{splits['alpha']},weight:3}},{{spec:{splits['beta']},weight:1}}]"


def test_cli_form_composes_and_passes_preflight(compose_train, small_catalogue, splits) -> None:
    cfg = compose_train(cli_sources(splits), "data.resampled=true", data_dir=small_catalogue)
    assert OmegaConf.to_object(cfg.data.train) == weighted(splits, alpha=3, beta=1)
    preflight(cfg, "train")


@pytest.mark.slow
def test_training_on_weighted_sources_logs_the_mix_and_resumes_exactly(
    compose_train, small_catalogue, splits, tmp_path
) -> None:
    """A tiny run from the CLI form: the mix in TensorBoard (hparams and text), and a run stopped after 2
    steps and resumed from its last.ckpt goes on with the batches of the uninterrupted run."""
    options = (cli_sources(splits), "data.resampled=true", "data.samples_per_epoch=96")
    full = fit(compose_train, small_catalogue, tmp_path / "full", "trainer.max_steps=5", *options)
    assert sorted(full.products) == list(range(5))
    board = tmp_path / "full" / "tensorboard"
    hparams = yaml.safe_load((board / "hparams.yaml").read_text())
    assert hparams["data/mix/0-alpha/share"] == pytest.approx(0.75)
    assert hparams["data/mix/1-beta/weight"] == 1.0
    events = EventAccumulator(str(board), size_guidance={"tensors": 0}).Reload()
    assert "data/mix/text_summary" in events.Tags()["tensors"]

    fit(compose_train, small_catalogue, tmp_path / "stopped", "trainer.max_steps=2", *options)
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    resumed = fit(
        compose_train,
        small_catalogue,
        tmp_path / "resumed",
        "trainer.max_steps=5",
        f"ckpt_path={last}",
        *options,
    )
    assert resumed.start["batches"] == 2
    assert resumed.products == {step: p for step, p in full.products.items() if step >= 2}
