"""The workers' image pipeline: uint8 batches normalised on the device, and reduced-scale JPEG decode.

open_clip's transforms end in ToTensor + Normalize, so every worker turns each pixel into three float32s
and ships 4 bytes per channel through shared memory. `worker_transform` keeps every step before those
two and emits the uint8 tensor ToTensor would have divided by 255; `normalize_on_device` (called by the
module once the batch is on its device) divides and normalises there, so the batch equals the float
pipeline's to float rounding, a quarter of the bytes cross between processes, and the float work runs
on the GPU.

`DraftCrop` (train only, `data.draft_decode`) replaces the train transform's RandomResizedCrop: it draws
the crop from the JPEG header's size (the same torch RNG draws as RandomResizedCrop, so a seed gives the
same crop box), asks libjpeg-turbo for the largest DCT reduction (1/2, 1/4, 1/8) that still leaves the
crop at least the output size in both directions, and crops and resizes from there. A 1200x1600 photo
cropped to 224 px then decodes at 1/4 of each side: a sixteenth of the pixels. When the crop is the last
step before the uint8 tensor (open_clip's default train transform), it resizes with torch's antialiased
uint8 resize (PIL's filters, about 4x faster than PIL's resize on one core; `tensor_resize`), on the box
rounded to whole pixels of the decoded grid, and decodes with simplejpeg (the same libjpeg-turbo scaled
decode, the same pixels, straight into a numpy array: Pillow's decode plus its copy out to numpy cost 15%
more per photo; what simplejpeg cannot or will not decode goes to Pillow, so the same samples are kept and
skipped as on the float path). Both change pixels (the DCT scaling averages blocks where the
full path resamples bicubically; torch's resize rounds between its two passes as PIL does not), hence
train-only; docs/training.md#data-pipeline-speed has the measured differences.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import open_clip
import simplejpeg
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transform import MaybeConvertMode
from PIL import Image
from torchvision.transforms import Compose, InterpolationMode, Normalize, RandomResizedCrop, ToTensor
from torchvision.transforms.functional import pil_modes_mapping

log = logging.getLogger(__name__)

DCT_REDUCTIONS = (8, 4, 2)
# the filters torch resizes uint8 images with as PIL does (antialiased; a=-0.5 for bicubic)
TORCH_RESIZE_MODES = {InterpolationMode.BICUBIC: "bicubic", InterpolationMode.BILINEAR: "bilinear"}
JPEG_MAGIC = b"\xff\xd8"
# the JPEG colour spaces simplejpeg turns into RGB as Pillow's convert("RGB") does (CMYK/YCCK go to Pillow)
TURBO_COLORSPACES = ("YCbCr", "Gray", "RGB")


class ImagePipeline(Compose):
    """open_clip's steps with ours swapped in; `lazy_decode` tells the sample decoder to hand over the
    image's encoded bytes, since the first step decodes it itself."""

    def __init__(self, transforms: Sequence[Callable], lazy_decode: bool = False) -> None:
        super().__init__(list(transforms))
        self.lazy_decode = lazy_decode


def to_uint8_tensor(image: Image.Image | torch.Tensor) -> torch.Tensor:
    """CHW uint8, the values ToTensor would divide by 255, as a view of the HWC pixels: transposing here
    cost more than the copy itself; `stack_images` copies them into a channels-last batch instead. A
    tensor (`DraftCrop`'s, already uint8) passes through."""
    if isinstance(image, torch.Tensor):
        return image
    array = np.array(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """One NCHW batch; uint8 images are stacked through their HWC memory (a plain copy), so the batch is
    channels-last, which every torch op and the model's patch embedding take as it is."""
    if images and images[0].dtype == torch.uint8:
        return torch.stack([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2)
    return torch.stack(images)


def normalize_on_device(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """ToTensor's division and Normalize, on whichever device the uint8 batch now is."""
    mean = mean.to(images.device).view(1, -1, 1, 1)
    std = std.to(images.device).view(1, -1, 1, 1)
    return (images.float().div_(255.0) - mean) / std


def split_normalize(transform: Callable) -> tuple[list[Callable], Normalize] | None:
    """open_clip's steps before ToTensor + Normalize, and the Normalize; None for any other shape
    (timm's transforms, for example), which then stay on the float path."""
    steps = getattr(transform, "transforms", None)
    if not isinstance(transform, Compose) or not steps or len(steps) < 2:
        return None
    *head, to_tensor, normalize = steps
    if not isinstance(to_tensor, ToTensor) or not isinstance(normalize, Normalize):
        return None
    return head, normalize


def dct_reduction(crop_size: tuple[int, int], output_size: tuple[int, int]) -> int:
    """The largest JPEG DCT reduction that keeps a (height, width) crop at least `output_size`."""
    (height, width), (out_height, out_width) = crop_size, output_size
    return next(
        (r for r in DCT_REDUCTIONS if height >= r * out_height and width >= r * out_width),
        1,
    )


def tensor_resize(
    pixels: torch.Tensor, box: tuple[float, float, float, float], size: tuple[int, int], mode: str
) -> torch.Tensor:
    """The `box` (left, top, right, bottom) of CHW uint8 `pixels`, rounded to whole pixels, resized to
    `size` by torch's antialiased uint8 resize: a fraction of PIL's time on one core, a channels-last CHW
    result."""
    height, width = pixels.shape[1:]
    left, top = min(round(box[0]), width - 1), min(round(box[1]), height - 1)
    right, bottom = max(min(round(box[2]), width), left + 1), max(min(round(box[3]), height), top + 1)
    crop = pixels[None, :, top:bottom, left:right].contiguous(memory_format=torch.channels_last)
    return torch.nn.functional.interpolate(crop, size=size, mode=mode, antialias=True)[0]


def turbo_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of a JPEG simplejpeg decodes to RGB as Pillow would; None for anything else, and for
    headers libjpeg-turbo flags (extraneous bytes and the like), which Pillow judges as on the float path."""
    if not data.startswith(JPEG_MAGIC):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return (height, width) if colorspace in TURBO_COLORSPACES else None


def turbo_decode(data: bytes, size: tuple[int, int], reduction: int) -> torch.Tensor | None:
    """The JPEG decoded at 1/`reduction` of each side of its (height, width) `size` (libjpeg-turbo's
    output is the sides divided and rounded up, the smallest that meets these minimums), as CHW uint8;
    None where libjpeg-turbo flags the data (a truncated file, stray bytes): Pillow then decides, refusing
    what it refuses on the float path and decoding what it decodes there."""
    height, width = size
    try:
        rgb = simplejpeg.decode_jpeg(
            data, "RGB", min_height=math.ceil(height / reduction), min_width=math.ceil(width / reduction)
        )
    except ValueError:
        return None
    return torch.from_numpy(rgb).permute(2, 0, 1)


def scaled_box(box: tuple[int, int, int, int], factor: float) -> tuple[float, ...]:
    """A (left, top, right, bottom) box of the full image on the grid reduced by `factor`: pixel k of the
    reduced image covers pixels [k, k + 1) * factor."""
    return tuple(side / factor for side in box)


def pil_draft(image: Image.Image, reduction: int) -> tuple[Image.Image, float]:
    """The opened image decoded by Pillow, at 1/`reduction` of each side where it is a JPEG, in RGB, and
    the reduction it got (Pillow's draft box is the full size divided by it)."""
    factor = 1.0
    if reduction > 1 and image.format == "JPEG":
        full_width = image.width
        drafted = image.draft("RGB", (max(1, image.width // reduction), max(1, image.height // reduction)))
        if drafted is not None:
            factor = full_width / drafted[1][2]
    image.load()
    return (image if image.mode == "RGB" else image.convert("RGB")), factor


class DraftCrop:
    """RandomResizedCrop that decodes a JPEG at the largest DCT reduction the drawn crop allows; with
    `to_tensor` (nothing but a mode conversion follows it) it resizes in torch and returns a uint8 tensor."""

    def __init__(self, crop: RandomResizedCrop, to_tensor: bool = False) -> None:
        self.crop = crop
        self.crop_range = (crop.scale, crop.ratio)
        self.size = tuple(crop.size)
        self.resample = pil_modes_mapping[crop.interpolation]
        self.torch_mode = TORCH_RESIZE_MODES.get(crop.interpolation) if to_tensor else None

    def __call__(self, data: bytes) -> Image.Image | torch.Tensor:
        """The crop, resized to the output size; `data` is the encoded image: this call decodes it."""
        turbo_size = turbo_jpeg_size(data) if self.torch_mode is not None else None
        image = None if turbo_size else Image.open(io.BytesIO(data))
        height, width = turbo_size or (image.height, image.width)
        # a tensor of the image's shape and no memory: torchvision reads the size off it, and the draws
        # are RandomResizedCrop's own
        shape = torch.empty(1, 1, 1).expand(1, height, width)
        top, left, crop_height, crop_width = RandomResizedCrop.get_params(shape, *self.crop_range)
        reduction = dct_reduction((crop_height, crop_width), self.size)
        crop = (left, top, left + crop_width, top + crop_height)
        pixels = turbo_decode(data, turbo_size, reduction) if turbo_size else None
        if pixels is not None:
            return tensor_resize(pixels, scaled_box(crop, reduction), self.size, self.torch_mode)
        decoded, factor = pil_draft(image or Image.open(io.BytesIO(data)), reduction)
        box = scaled_box(crop, factor)
        if self.torch_mode is not None:
            return tensor_resize(to_uint8_tensor(decoded), box, self.size, self.torch_mode)
        if factor == 1.0:  # decoded in full: open_clip's crop, then resize, for its very pixels
            return decoded.crop(box).resize(self.size[::-1], self.resample)
        return decoded.resize(self.size[::-1], self.resample, box=box)

    def __repr__(self) -> str:
        resize = f"torch {self.torch_mode}" if self.torch_mode else "PIL"
        return (
            f"{type(self).__name__}(size={self.size}, scale={self.crop.scale}, ratio={self.crop.ratio}, "
            f"resize={resize})"
        )


def worker_transform(transform: Callable, uint8: bool, draft: bool = False) -> Callable:
    """The transform the data workers run: open_clip's, ending in uint8 (`uint8`), with its leading
    RandomResizedCrop decoding at a reduced scale (`draft`); unchanged where its shape is not open_clip's."""
    parts = split_normalize(transform)
    if parts is None:
        if uint8 or draft:
            log.info("image transform %s is not open_clip's: the workers keep it as is (float)", transform)
        return transform
    head, normalize = parts
    lazy = draft and bool(head) and isinstance(head[0], RandomResizedCrop)
    if lazy:  # only a mode conversion left (a tensor is RGB already): the crop can hand over the tensor
        to_tensor = uint8 and all(isinstance(step, MaybeConvertMode) for step in head[1:])
        head = [DraftCrop(head[0], to_tensor=to_tensor), *head[1:]]
    tail = [to_uint8_tensor] if uint8 else [ToTensor(), normalize]
    return ImagePipeline([*head, *tail], lazy_decode=lazy)


def decodes_lazily(transform: Any) -> bool:
    """Whether `transform` wants the image's encoded bytes rather than its decoded pixels."""
    return bool(getattr(transform, "lazy_decode", False))


def image_normalization(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std open_clip built the model's transforms with (its preprocess config, else
    open_clip's defaults, as `image_transform` falls back), for `normalize_on_device`."""
    try:
        cfg = open_clip.get_model_preprocess_cfg(model)
    except AttributeError:  # not an open_clip tower (a test double): open_clip's defaults, as its transforms
        cfg = {}
    mean = cfg.get("mean") or OPENAI_DATASET_MEAN
    std = cfg.get("std") or OPENAI_DATASET_STD
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
