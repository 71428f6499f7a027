"""Train-slice recall (`data.train_eval`): a second validation loader of the first N train samples, its
recall against brute force, the loaders' exact lengths, preflight, and the curves a training run logs."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from helpers.embedded_splits import brute_force_hits
from helpers.lightning_trainer import quiet_trainer
from helpers.shard_samples import jpeg_bytes, shard_sample, write_split
from helpers.tiny_model import random_tiny
from helpers.train_overrides import TINY_ON_CPU
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fashion_clip.data.datamodule import WebDatasetDataModule
from fashion_clip.data.image_pipeline import image_normalization, normalize_on_device
from fashion_clip.data.samples import product_key
from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.losses.infonce import InfoNCELoss
from fashion_clip.models.clip_module import ClipModule
from fashion_clip.preflight import preflight
from fashion_clip.training import train


def _samples(count: int, views: int = 1, offset: int = 0) -> list[dict]:
    """Distinct colours (no tied image scores), `views` images per product, one caption per product."""
    return [
        shard_sample(i, jpeg_bytes(((37 * i) % 256, (91 * i) % 256, (13 * i) % 256)), f"p{i // views}")
        for i in range(offset, offset + count)
    ]


def _module(tiny_clip, **kwargs) -> WebDatasetDataModule:
    return WebDatasetDataModule(
        train_transform=tiny_clip.train_transform,
        val_transform=tiny_clip.val_transform,
        tokenizer=tiny_clip.tokenizer,
        **kwargs,
    )


def _products(loader) -> list[int]:
    return [p for batch in loader for p in batch["product"].tolist()]


def _product(sample: dict) -> int:
    return product_key(json.loads(sample["json"])["product_id"])


def _eval_image(tiny_clip, sample: dict) -> torch.Tensor:
    """What evaluation feeds the model: the eval transform of the decoded jpeg, never augmentation."""
    return tiny_clip.val_transform(Image.open(io.BytesIO(sample["jpg"])).convert("RGB"))


def test_without_train_eval_validation_is_one_loader(tmp_path, tiny_clip) -> None:
    split = write_split(tmp_path / "val", _samples(6), shard_size=4)
    loader = _module(tiny_clip, val=str(split), num_workers=0).val_dataloader()
    assert isinstance(loader, torch.utils.data.DataLoader)


@pytest.mark.parametrize("workers", [0, 2])
def test_sample_count_is_the_first_n_train_samples_every_time(tmp_path, tiny_clip, workers: int) -> None:
    samples = _samples(30)
    train_split = write_split(tmp_path / "train", samples, shard_size=7)
    val_split = write_split(tmp_path / "val", _samples(5, offset=100), shard_size=7)
    dm = _module(
        tiny_clip,
        train=str(train_split),
        val=str(val_split),
        train_eval=12,
        eval_batch_size=5,
        num_workers=workers,
    )
    val, train_slice = dm.val_dataloader()
    assert _products(val) == [product_key(f"p{i}") for i in range(100, 105)]
    first = _products(train_slice)
    assert sorted(first) == sorted(product_key(f"p{i}") for i in range(12))
    assert _products(train_slice) == first
    assert len(train_slice) == sum(1 for _ in train_slice)
    mean, std = image_normalization(tiny_clip.model)
    seen = {
        p: image
        for batch in train_slice
        for p, image in zip(
            batch["product"].tolist(), normalize_on_device(batch["image"], mean, std), strict=True
        )
    }
    for sample in samples[:12]:
        assert torch.equal(seen[_product(sample)], _eval_image(tiny_clip, sample))


def test_sample_count_beyond_the_train_split_is_the_whole_split(tmp_path, tiny_clip) -> None:
    split = write_split(tmp_path / "train", _samples(9), shard_size=4)
    dm = _module(tiny_clip, train=str(split), val=str(split), train_eval=50, eval_batch_size=4, num_workers=0)
    train_slice = dm.val_dataloader()[1]
    assert sorted(_products(train_slice)) == sorted(product_key(f"p{i}") for i in range(9))
    assert len(train_slice) == 3


def test_shard_spec_is_read_as_a_split_of_its_own(tmp_path, tiny_clip) -> None:
    train_split = write_split(tmp_path / "train", _samples(10), shard_size=4)
    held = write_split(tmp_path / "held", _samples(6, offset=50), shard_size=4)
    dm = _module(tiny_clip, train=str(train_split), val=str(held), train_eval=f"{held}/*.tar", num_workers=0)
    assert _products(dm.val_dataloader()[1]) == [product_key(f"p{i}") for i in range(50, 56)]


def test_ranks_share_the_slice_and_val_without_overlap_or_loss(tmp_path, tiny_clip) -> None:
    train_split = write_split(tmp_path / "train", _samples(30), shard_size=7)
    val_split = write_split(tmp_path / "val", _samples(23, offset=100), shard_size=5)
    seen: dict[str, list[int]] = {"val": [], "train_eval": []}
    for rank in range(2):
        dm = _module(
            tiny_clip,
            train=str(train_split),
            val=str(val_split),
            train_eval=13,
            eval_batch_size=3,
            num_workers=2,
        )
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        for name, loader in zip(("val", "train_eval"), dm.val_dataloader(), strict=True):
            batches = list(loader)
            assert len(loader) == len(batches), (name, rank)
            seen[name] += [p for batch in batches for p in batch["product"].tolist()]
    assert sorted(seen["val"]) == sorted(product_key(f"p{i}") for i in range(100, 123))
    assert sorted(seen["train_eval"]) == sorted(product_key(f"p{i}") for i in range(13))


def test_eval_length_counts_each_workers_partial_batch(tmp_path, tiny_clip) -> None:
    """Three shards of 10 on two workers: 20 + 10 samples in batches of 8 are 3 + 2, not ceil(30/8)=4;
    Lightning stops at the loader's length, so a short one would drop the last batch's samples."""
    split = write_split(tmp_path / "val", _samples(30), shard_size=10)
    loader = _module(tiny_clip, val=str(split), eval_batch_size=8, num_workers=2).val_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 5
    assert sum(len(batch["image"]) for batch in batches) == 30


def _brute_force_recall(module: ClipModule, tiny_clip, samples: list[dict], ks: tuple[int, ...]) -> dict:
    """Recall@k both ways over `samples` embedded one by one, ranked by a full Python sort."""
    images = torch.stack([_eval_image(tiny_clip, s) for s in samples])
    texts = tiny_clip.tokenizer([s["txt"].decode() for s in samples])
    module.eval()
    with torch.no_grad():
        image, text = module(images, texts)
    products = [_product(s) for s in samples]
    pairs = {"i2t": (image, text), "t2i": (text, image)}
    return {
        f"{direction}_r{k}": sum(brute_force_hits(*pairs[direction], products, products, k)) / len(samples)
        for direction in pairs
        for k in ks
    }


def test_slice_recall_matches_brute_force_and_val_keeps_its_names(tmp_path, tiny_clip) -> None:
    samples = _samples(40, views=2)
    train_split = write_split(tmp_path / "train", samples, shard_size=9)
    val_split = write_split(tmp_path / "val", _samples(10, views=2, offset=200), shard_size=9)
    dm = _module(
        tiny_clip, train=str(train_split), val=str(val_split), train_eval=24, eval_batch_size=7, num_workers=0
    )
    module = ClipModule(random_tiny(3), InfoNCELoss(), optimizer=torch.optim.AdamW)
    trainer = quiet_trainer()
    trainer.validate(module, datamodule=dm)
    logged = trainer.callback_metrics
    assert not [name for name in logged if "dataloader_idx" in name]
    assert {"val/loss", "val/mean_recall", "train_eval/loss", "train_eval/mean_recall"} <= set(logged)
    expected = _brute_force_recall(module, tiny_clip, samples[:24], (1, 5, 10))
    for name, value in expected.items():
        assert float(logged[f"train_eval/{name}"]) == pytest.approx(value, abs=1e-6), name
    assert float(logged["train_eval/mean_recall"]) == pytest.approx(sum(expected.values()) / 6, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ConfigError, "data.train_eval=0 is out of range"),
        (2.5, ConfigError, "data.train_eval=2.5 is not a whole number"),
        ("nowhere/*.tar", MissingInputError, "data.train_eval: shard spec 'nowhere/\\*.tar' matched no file"),
    ],
)
def test_preflight_refuses_a_train_eval_that_points_to_nothing(
    compose_train, small_catalogue, value, error, message
) -> None:
    cfg = compose_train(*TINY_ON_CPU, data_dir=small_catalogue)
    cfg.data.train_eval = value
    with pytest.raises(error, match=message):
        preflight(cfg, "train")


@pytest.mark.slow
def test_training_logs_train_eval_curves_and_still_monitors_val(
    compose_train, small_catalogue, tmp_path
) -> None:
    cfg = compose_train(
        *TINY_ON_CPU,
        "data.train_eval=16",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "test_before_fit=false",
        "test_after_fit=false",
        data_dir=small_catalogue,
    )
    checkpoints = CheckpointState()
    train(cfg, extra_callbacks=[checkpoints])
    assert checkpoints.monitor == "val/mean_recall"
    assert checkpoints.best == pytest.approx(float(checkpoints.logged["val/mean_recall"]))
    assert 0.0 <= float(checkpoints.logged["train_eval/mean_recall"]) <= 1.0
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"val/mean_recall", "train_eval/mean_recall", "train_eval/i2t_r1", "train_eval/loss"} <= scalars
    assert not [tag for tag in scalars if "dataloader_idx" in tag]


class CheckpointState(L.Callback):
    """What the best-checkpoint callback monitored and scored, and the metrics logged at the end."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.monitor = trainer.checkpoint_callback.monitor
        self.best = float(trainer.checkpoint_callback.best_model_score)
        self.logged = dict(trainer.callback_metrics)
