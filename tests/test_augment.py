"""`data.augment`: open_clip's augmentation settings as config, built as open_clip and timm build them, on
the data workers' uint8 and float paths, replayed exactly by a resumed epoch, and refused when wrong."""

from __future__ import annotations

import io
import random
from pathlib import Path

import lightning as L
import numpy as np
import open_clip
import pytest
import torch
from helpers.entry_in_process import run_entry
from helpers.shard_samples import shard_sample, write_split
from helpers.train_overrides import TINY_ONE_STEP
from omegaconf import OmegaConf
from open_clip.transform import color_jitter
from PIL import Image
from timm.data import create_transform
from timm.data.random_erasing import RandomErasing

from fashion_clip.data.datamodule import WebDatasetDataModule
from fashion_clip.data.image_pipeline import DraftCrop, ImagePipeline, normalize_on_device, worker_transform
from fashion_clip.errors import ConfigError
from fashion_clip.models.factory import augmented_train_transform
from fashion_clip.preflight import preflight
from fashion_clip.training import train

TINY = "FashionCLIP-Tiny"
PRESETS = ("jitter", "randaugment")


def augment_settings(compose_train, *overrides: str) -> dict:
    """`data.augment` as a composed run sees it, in plain values."""
    return OmegaConf.to_container(compose_train(*overrides).data.augment, resolve=True)


def tiny_preprocess(tiny_clip) -> dict:
    """The tiny model's preprocessing, which the train transform is built with."""
    return open_clip.get_model_preprocess_cfg(tiny_clip.model)


def noise_photo(width: int, height: int, seed: int) -> Image.Image:
    """A colourful JPEG-decoded image, large enough for draft decode at the tiny model's 64 px."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def seeded_call(transform, image: Image.Image, seed: int) -> torch.Tensor:
    """One transform call on seeded torch, Python and numpy RNGs, as the data workers seed each batch."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    return transform(image)


def assert_same_pixels(built, reference) -> None:
    """Both transforms give the same tensors for the same images and seeds."""
    for seed in range(4):
        image = noise_photo(100, 80, seed)
        assert torch.equal(seeded_call(built, image, seed), seeded_call(reference, image, seed))


def test_the_default_is_open_clips_own_train_transform(compose_train, tiny_clip) -> None:
    built = augmented_train_transform(tiny_preprocess(tiny_clip), augment_settings(compose_train))
    assert repr(built) == repr(tiny_clip.train_transform)
    image = noise_photo(120, 90, seed=0)
    assert torch.equal(seeded_call(built, image, 1), seeded_call(tiny_clip.train_transform, image, 1))


@pytest.mark.filterwarnings("ignore:Unused augmentation cfg items")  # open_clip's own, about used ones
def test_jitter_preset_is_open_clips_aug_cfg(compose_train, tiny_clip) -> None:
    settings = augment_settings(compose_train, "+augment=jitter")
    built = augmented_train_transform(tiny_preprocess(tiny_clip), settings)
    _, reference, _ = open_clip.create_model_and_transforms(
        TINY, aug_cfg={"color_jitter": (0.4, 0.4, 0.2, 0.0), "color_jitter_prob": 0.8}
    )
    assert any(isinstance(step, color_jitter) for step in built.transforms)
    assert_same_pixels(built, reference)


def test_randaugment_preset_is_timms_create_transform(compose_train, tiny_clip) -> None:
    built = augmented_train_transform(
        tiny_preprocess(tiny_clip), augment_settings(compose_train, "+augment=randaugment")
    )
    preprocess = tiny_preprocess(tiny_clip)
    reference = create_transform(
        input_size=(3, 64, 64),
        is_training=True,
        hflip=0.0,
        scale=(0.9, 1.0),
        mean=preprocess["mean"],
        std=preprocess["std"],
        interpolation="bicubic",
        auto_augment="rand-m9-mstd0.5-inc1",
        re_prob=0.25,
        re_count=1,
        re_mode="pixel",
        color_jitter=None,
    )
    assert isinstance(built.transforms[-1], RandomErasing)
    assert_same_pixels(built, reference)


def test_jitter_keeps_the_uint8_and_draft_decode_path(compose_train, tiny_clip) -> None:
    built = augmented_train_transform(
        tiny_preprocess(tiny_clip), augment_settings(compose_train, "+augment=jitter")
    )
    fast = worker_transform(built, uint8=True, draft=True)
    assert isinstance(fast, ImagePipeline) and isinstance(fast.transforms[0], DraftCrop)
    assert fast.transforms[0].torch_mode is None  # the jitter after the crop takes PIL images
    assert any(isinstance(step, color_jitter) for step in fast.transforms)
    mean, std = (
        torch.tensor(tiny_preprocess(tiny_clip)["mean"]),
        torch.tensor(tiny_preprocess(tiny_clip)["std"]),
    )
    plain = worker_transform(built, uint8=True)  # full decode: pixels equal the float pipeline's
    for seed in range(4):
        image = noise_photo(120, 90, seed)
        pixels = seeded_call(plain, image, seed)
        expected = seeded_call(built, image, seed)
        assert pixels.dtype == torch.uint8
        assert (normalize_on_device(pixels[None], mean, std)[0] - expected).abs().max() < 1e-5


def test_timms_random_erasing_stays_on_the_float_path(compose_train, tiny_clip) -> None:
    built = augmented_train_transform(
        tiny_preprocess(tiny_clip), augment_settings(compose_train, "+augment=randaugment")
    )
    assert worker_transform(built, uint8=True, draft=True) is built
    without_erasing = augment_settings(compose_train, "+augment=randaugment", "data.augment.re_prob=null")
    fast = worker_transform(
        augmented_train_transform(tiny_preprocess(tiny_clip), without_erasing), uint8=True, draft=True
    )
    assert not isinstance(fast.transforms[0], DraftCrop)  # timm's own crop: decoded in full
    assert fast(noise_photo(120, 90, 0)).dtype == torch.uint8


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("preset", PRESETS)
def test_a_resumed_epoch_replays_the_augmented_pixels(
    compose_train, tmp_path, tiny_clip, preset: str, num_workers: int
) -> None:
    """Colour jitter draws from torch and Python's RNGs, timm's RandAugment from numpy's: a loader restored
    mid-epoch yields the very pixels the uninterrupted epoch had (draft decode on, as a catalogue run)."""
    photos = [noise_photo(200, 260, seed=i) for i in range(16)]
    samples = [shard_sample(i, _jpeg(photo), f"p{i}") for i, photo in enumerate(photos)]
    split = write_split(tmp_path / "train", samples, shard_size=4)
    settings = augment_settings(compose_train, f"+augment={preset}")

    def epoch(augment: dict, batches: int) -> list[dict]:
        loader = WebDatasetDataModule(
            train=str(split),
            batch_size=4,
            num_workers=num_workers,
            train_transform=augmented_train_transform(tiny_preprocess(tiny_clip), augment),
            val_transform=tiny_clip.val_transform,
            tokenizer=tiny_clip.tokenizer,
            seed=3,
            draft_decode=True,
        ).train_dataloader()
        loader.load_state_dict({"epoch": 1, "batches": batches})
        return list(loader)

    full = epoch(settings, 0)
    rest = epoch(settings, 2)
    assert len(rest) == len(full) - 2
    for got, expected in zip(rest, full[2:], strict=True):
        assert torch.equal(got["image"], expected["image"])
    unaugmented = epoch(augment_settings(compose_train), 0)
    assert not torch.equal(full[0]["image"].float(), unaugmented[0]["image"].float())


def _jpeg(image: Image.Image) -> bytes:
    """The image as JPEG bytes for a shard sample."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+data.augment.hflip=0.5"], "data.augment.hflip is not an augmentation setting"),
        (["data.augment.scale=[0.9]"], "data.augment.scale=[0.9]: give two values"),
        (["data.augment.scale=[1.0,0.5]"], "the low one first"),
        (["data.augment.scale=[0,1]"], "data.augment.scale[0]=0 is out of range: it must be above 0"),
        (["data.augment.color_jitter_prob=1.5"], "data.augment.color_jitter_prob=1.5 is out of range"),
        (
            ["data.augment.ratio=[0.75,1.33]"],
            "data.augment.ratio=[0.75, 1.33] is ignored unless data.augment.use_timm=true",
        ),
        (
            ["+augment=randaugment", "data.augment.gray_scale_prob=0.2"],
            "data.augment.gray_scale_prob=0.2 is ignored unless data.augment.use_timm=false",
        ),
        (["data.augment.color_jitter=[0.4,0.4,0.4,0.1]"], "set both or neither"),
        (
            ["+augment=jitter", "data.augment.color_jitter=[0.4,0.4,0.4]"],
            "data.augment.color_jitter=[0.4, 0.4, 0.4]: give 4 values",
        ),
        (
            ["+augment=jitter", "data.augment.color_jitter=[0.4,0.4,0.4,0.9]"],
            "data.augment does not build a train transform",
        ),
        (
            ["+augment=randaugment", "data.augment.auto_augment=rand-q9"],
            "data.augment does not build a train transform",
        ),
        (["data.augment.use_timm=maybe"], "data.augment.use_timm='maybe': give true or false"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(compose_train, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        preflight(compose_train(*overrides), "train")
    assert message in str(refused.value)


def test_the_cli_exits_2_naming_the_key(tmp_path: Path) -> None:
    done = run_entry(
        "train", "data.augment.gray_scale_prob=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert (
        "data.augment.gray_scale_prob=2 is out of range: it must be at least 0 and at most 1" in done.stderr
    )


class TrainTransform(L.Callback):
    """The train transform the data workers ran in the fit."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.transform = trainer.datamodule.train_transform


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "step", "uint8"), [("jitter", color_jitter, True), ("randaugment", RandomErasing, False)]
)
def test_a_tiny_run_trains_with_the_preset(compose_train, small_catalogue, preset, step, uint8: bool) -> None:
    cfg = compose_train(*TINY_ONE_STEP, f"+augment={preset}", data_dir=small_catalogue)
    seen = TrainTransform()
    train(cfg, extra_callbacks=[seen])
    assert any(isinstance(s, step) for s in seen.transform.transforms)
    assert isinstance(seen.transform, ImagePipeline) is uint8  # open_clip's shape: the uint8 workers
