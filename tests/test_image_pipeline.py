"""The workers' image pipeline: uint8 + device normalisation equals open_clip's float pipeline, and the
reduced-scale JPEG decode never leaves the crop smaller than the model's input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import simplejpeg
import torch
from helpers.shard_samples import shard_sample, write_split
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torchvision.transforms import InterpolationMode

from fashion_clip.data import image_pipeline
from fashion_clip.data.datamodule import WebDatasetDataModule
from fashion_clip.data.image_pipeline import (
    DraftCrop,
    dct_reduction,
    image_normalization,
    normalize_on_device,
    tensor_resize,
    to_uint8_tensor,
    worker_transform,
)
from fashion_clip.data.samples import decode_sample
from fashion_clip.losses import InfoNCELoss
from fashion_clip.models.clip_module import ClipModule


def photo(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """A textured JPEG (smooth gradients plus noise), so scaled decode differs from full decode."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) * 127 // (width + height)], axis=-1)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decoded(jpeg: bytes) -> Image.Image:
    return Image.open(io.BytesIO(jpeg)).convert("RGB")


PRESETS = {
    "openai": PreprocessCfg(size=(224, 224)),
    "siglip-like": PreprocessCfg(
        size=(96, 96),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bilinear",
        resize_mode="squash",
    ),
    "longest": PreprocessCfg(size=(80, 80), resize_mode="longest"),
}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("is_train", [True, False])
def test_uint8_then_device_normalisation_equals_the_float_pipeline(preset: str, is_train: bool) -> None:
    cfg = PRESETS[preset]
    float_transform = image_transform_v2(cfg, is_train=is_train)
    fast = worker_transform(float_transform, uint8=True)
    mean, std = torch.tensor(cfg.mean), torch.tensor(cfg.std)
    for seed, size in enumerate([(300, 400), (97, 61), (640, 480)]):
        image = decoded(photo(*size, seed=seed))
        torch.manual_seed(seed)
        expected = float_transform(image)
        torch.manual_seed(seed)
        pixels = fast(image)
        assert pixels.dtype == torch.uint8 and pixels.shape == expected.shape
        assert (normalize_on_device(pixels[None], mean, std)[0] - expected).abs().max() < 1e-5


def test_model_normalisation_is_the_one_its_transforms_use(tiny_clip) -> None:
    normalize = tiny_clip.val_transform.transforms[-1]
    mean, std = image_normalization(tiny_clip.model)
    assert torch.equal(mean, torch.tensor(normalize.mean, dtype=torch.float32))
    assert torch.equal(std, torch.tensor(normalize.std, dtype=torch.float32))


def test_a_transform_not_shaped_like_open_clips_is_kept() -> None:
    def transform(image: Image.Image) -> torch.Tensor:
        return torch.zeros(3, 4, 4)

    assert worker_transform(transform, uint8=True, draft=True) is transform


@pytest.mark.parametrize(
    ("crop", "output", "expected"),
    [
        ((224, 224), (224, 224), 1),
        ((447, 900), (224, 224), 1),
        ((448, 900), (224, 224), 2),
        ((1792, 1800), (224, 224), 8),
    ],
)
def test_dct_reduction_is_the_largest_that_keeps_the_output_size(crop, output, expected) -> None:
    assert dct_reduction(crop, output) == expected


def test_draft_decode_never_leaves_the_crop_smaller_than_the_output(monkeypatch) -> None:
    boxes: list[tuple[tuple[int, int], tuple[float, ...]]] = []
    resize = Image.Image.resize

    def recording_resize(self, size, resample=None, box=None, reducing_gap=None):
        boxes.append((self.size, box))
        return resize(self, size, resample, box, reducing_gap)

    monkeypatch.setattr(Image.Image, "resize", recording_resize)
    crop = DraftCrop(image_transform_v2(PreprocessCfg(size=(224, 224)), is_train=True).transforms[0])
    reductions = set()
    for seed, (width, height) in enumerate([(1200, 1600), (1601, 1203), (500, 2000), (230, 230), (900, 900)]):
        jpeg = photo(width, height, seed=seed)
        for draw in range(8):
            torch.manual_seed(draw)
            out = crop(jpeg)
            (decoded_width, decoded_height), box = boxes[-1]
            assert out.size == (224, 224)
            if box is None:  # decoded in full: open_clip's own crop, then resize
                reductions.add(1)
                continue
            assert decoded_width < width  # reduced: the crop still covers the output
            assert box[2] - box[0] >= 224 and box[3] - box[1] >= 224
            assert (
                0 <= box[0]
                and 0 <= box[1]
                and box[2] <= decoded_width + 1e-6
                and box[3] <= decoded_height + 1e-6
            )
            reductions.add(round(width / decoded_width))
    assert {1, 4}.issubset(reductions), reductions  # small images decode in full, large photos reduced


@pytest.mark.parametrize("uint8", [False, True])
def test_draft_crop_is_open_clips_crop_when_nothing_can_be_reduced(uint8: bool) -> None:
    """Same seed, same box, same filter. PIL's resize (float batches) gives open_clip's values to float
    rounding; torch's (uint8 batches: the crop hands over a tensor) rounds between its two passes where
    PIL does not, so a value may move by a level or two, and most stay equal."""
    float_transform = image_transform_v2(PreprocessCfg(size=(224, 224)), is_train=True)
    fast = worker_transform(float_transform, uint8=uint8, draft=True)
    assert (fast.transforms[0].torch_mode == "bicubic") is uint8
    mean, std = image_normalization(torch.nn.Identity())
    for seed in range(4):
        jpeg = photo(300, 360, seed=seed)
        torch.manual_seed(seed)
        expected = float_transform(decoded(jpeg))
        torch.manual_seed(seed)
        got = fast(jpeg)
        if uint8:
            assert got.dtype == torch.uint8 and got.shape == (3, 224, 224)
            got = normalize_on_device(got[None], mean, std)[0]
        levels = ((got - expected) * std.view(-1, 1, 1)).abs() * 255
        assert levels.max() <= (2 if uint8 else 0) + 1e-3, float(levels.max())
        assert (levels < 1e-3).float().mean() > (0.6 if uint8 else 0.999)


def test_tensor_resize_keeps_the_rounded_box_inside_the_image() -> None:
    """Boxes on the reduced grid are fractional: rounded, clipped and never empty, the crop keeps the
    output size (in channels-last memory, which `stack_images` copies as it is)."""
    image = to_uint8_tensor(decoded(photo(50, 40)))
    for box in [(0.4, 0.6, 49.6, 39.5), (-0.2, 0, 50.3, 40.2), (49.7, 39.8, 50.0, 40.0), (10, 5, 10.2, 5.1)]:
        out = tensor_resize(image, box, (16, 24), "bilinear")
        assert out.shape == (3, 16, 24) and out.dtype == torch.uint8
    assert tensor_resize(image, (2, 3, 40, 30), (16, 24), "bicubic").permute(1, 2, 0).is_contiguous()
    whole = tensor_resize(image, (0, 0, 50, 40), (40, 50), "bicubic")
    assert torch.equal(whole, image)  # same size: untouched


def test_the_torch_path_decodes_no_smaller_than_the_crop_needs(monkeypatch) -> None:
    """The uint8 path's decode (simplejpeg's scaled decode) leaves the crop at least the output size."""
    calls: list[tuple[tuple[int, ...], tuple[float, ...]]] = []
    resize = image_pipeline.tensor_resize

    def recording_resize(pixels, box, size, mode):
        calls.append((tuple(pixels.shape), box))
        return resize(pixels, box, size, mode)

    monkeypatch.setattr(image_pipeline, "tensor_resize", recording_resize)
    crop = DraftCrop(image_transform_v2(PreprocessCfg(size=(224, 224)), is_train=True).transforms[0], True)
    reductions = set()
    for seed, (width, height) in enumerate([(1200, 1600), (1601, 1203), (500, 2000), (230, 230), (900, 900)]):
        jpeg = photo(width, height, seed=seed)
        for draw in range(8):
            torch.manual_seed(draw)
            assert crop(jpeg).shape == (3, 224, 224)
            (_, decoded_height, decoded_width), box = calls[-1]
            reduction = round(width / decoded_width)
            assert (decoded_height, decoded_width) == (-(-height // reduction), -(-width // reduction))
            reductions.add(reduction)
            if reduction == 1:  # decoded in full: the crop is open_clip's, whatever its size
                continue
            assert box[2] - box[0] >= 224 and box[3] - box[1] >= 224  # reduced: the crop still covers it
            assert (
                0 <= box[0]
                and 0 <= box[1]
                and box[2] <= decoded_width + 1e-6
                and box[3] <= decoded_height + 1e-6
            )
    assert {1, 4}.issubset(reductions), reductions


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_the_torch_path_has_pillows_pixels(mode: str) -> None:
    """simplejpeg (colour and grey JPEGs) and Pillow's draft decode the same scaled pixels, so the crop is
    the same whichever decodes; CMYK JPEGs go to Pillow, whose conversion to RGB is the reference."""
    crop = image_pipeline.RandomResizedCrop(96, scale=(0.9, 1.0), interpolation=InterpolationMode.BICUBIC)
    turbo, pil = DraftCrop(crop, to_tensor=True), DraftCrop(crop)
    for seed, (width, height) in enumerate([(800, 1000), (410, 390)]):
        buffer = io.BytesIO()
        Image.open(io.BytesIO(photo(width, height, seed=seed))).convert(mode).save(buffer, format="JPEG")
        jpeg = buffer.getvalue()
        for draw in range(3):
            torch.manual_seed(draw)
            got = turbo(jpeg)
            torch.manual_seed(draw)
            reference = pil_reference(pil, jpeg)
            assert torch.equal(got, reference)


def pil_reference(crop: DraftCrop, jpeg: bytes) -> torch.Tensor:
    """What the torch path must give: Pillow's scaled decode, then the same torch resize."""
    height, width = Image.open(io.BytesIO(jpeg)).size[::-1]
    shape = torch.empty(1, 1, 1).expand(1, height, width)
    top, left, crop_height, crop_width = image_pipeline.RandomResizedCrop.get_params(shape, *crop.crop_range)
    reduction = dct_reduction((crop_height, crop_width), crop.size)
    decoded, factor = image_pipeline.pil_draft(Image.open(io.BytesIO(jpeg)), reduction)
    box = (left / factor, top / factor, (left + crop_width) / factor, (top + crop_height) / factor)
    return image_pipeline.tensor_resize(to_uint8_tensor(decoded), box, crop.size, "bicubic")


def test_draft_crop_draws_the_same_box_as_open_clip_on_large_photos() -> None:
    """Same seed, same crop: only the resampling differs (block average vs bicubic), so the images agree
    closely; a box mapped with the wrong scale would not."""
    float_transform = image_transform_v2(PreprocessCfg(size=(224, 224)), is_train=True)
    fast = worker_transform(float_transform, uint8=True, draft=True)
    jpeg = photo(1200, 1600, seed=7)
    mean, std = image_normalization(torch.nn.Identity())
    for seed in range(4):
        torch.manual_seed(seed)
        expected = float_transform(decoded(jpeg))
        torch.manual_seed(seed)
        got = normalize_on_device(fast(jpeg)[None], mean, std)[0]
        pixel_error = ((got - expected) * std.view(-1, 1, 1)).abs().mean()
        assert pixel_error < 4 / 255, float(pixel_error)


@pytest.mark.parametrize("uint8", [False, True])
def test_a_truncated_jpeg_fails_in_the_draft_path_as_in_the_full_one(uint8: bool) -> None:
    """Pillow refuses the missing tail on every path (simplejpeg's refusal hands the file to Pillow), so
    the sample is skipped and counted rather than trained on with a grey lower part."""
    jpeg = photo(1200, 1600)
    sample = {"__key__": "k", "jpg": jpeg[: len(jpeg) // 3], "txt": b"a dress"}
    float_transform = image_transform_v2(PreprocessCfg(size=(64, 64)), is_train=True)
    for draft in (True, False):
        with pytest.raises(OSError, match="truncated"):
            decode_sample(sample, worker_transform(float_transform, uint8=uint8, draft=draft))


def test_a_jpeg_libjpeg_turbo_flags_but_pillow_decodes_is_kept() -> None:
    """Stray bytes before a marker: simplejpeg refuses the file, Pillow (the float path, evaluation)
    decodes it; the uint8 train crop follows Pillow rather than skipping a sample the others keep."""
    jpeg = photo(800, 1000)
    marker = jpeg.index(b"\xff\xdb")
    stray = jpeg[:marker] + b"\x12\x34" + jpeg[marker:]
    with pytest.raises(ValueError, match="extraneous bytes"):
        simplejpeg.decode_jpeg(stray)
    crop = image_pipeline.RandomResizedCrop(96, scale=(0.9, 1.0), interpolation=InterpolationMode.BICUBIC)
    torch.manual_seed(0)
    got = DraftCrop(crop, to_tensor=True)(stray)
    torch.manual_seed(0)
    assert torch.equal(got, pil_reference(DraftCrop(crop), stray))
    torch.manual_seed(0)
    assert torch.equal(got, pil_reference(DraftCrop(crop), jpeg))  # the same pixels as the clean file


def test_the_module_normalises_uint8_batches_and_leaves_float_ones(tiny_clip) -> None:
    module = ClipModule(tiny_clip.model, loss=InfoNCELoss(), optimizer=torch.optim.SGD)
    pixels = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    batch = module.on_after_batch_transfer({"image": pixels, "text": torch.zeros(2, 4)}, 0)
    mean, std = image_normalization(tiny_clip.model)
    assert torch.equal(batch["image"], normalize_on_device(pixels, mean, std))
    floats = torch.randn(2, 3, 8, 8)
    assert module.on_after_batch_transfer({"image": floats}, 0)["image"] is floats


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_with_draft_decode_replays_the_same_pixels(tmp_path, tiny_clip, num_workers: int) -> None:
    """Large photos (reduced 4x for the tiny model's 64 px): a loader restored mid-epoch yields the very
    batches, pixels included, the uninterrupted epoch had."""
    samples = [shard_sample(i, photo(240, 320, seed=i), f"p{i}") for i in range(24)]
    split = write_split(tmp_path / "train", samples, shard_size=6)

    def loader() -> torch.utils.data.DataLoader:
        return WebDatasetDataModule(
            train=str(split),
            batch_size=4,
            num_workers=num_workers,
            train_transform=tiny_clip.train_transform,
            val_transform=tiny_clip.val_transform,
            tokenizer=tiny_clip.tokenizer,
            seed=3,
            draft_decode=True,
        ).train_dataloader()

    reference = loader()
    reference.load_state_dict({"epoch": 1, "batches": 0})
    full = list(reference)
    assert full[0]["image"].dtype == torch.uint8
    resumed = loader()
    resumed.load_state_dict({"epoch": 1, "batches": 2})
    rest = list(resumed)
    assert len(rest) == len(full) - 2
    for got, expected in zip(rest, full[2:], strict=True):
        assert torch.equal(got["image"], expected["image"])
        assert torch.equal(got["product"], expected["product"])
