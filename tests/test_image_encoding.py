"""Images from files and arrays become RGB JPEGs, resized only on request and identically every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.raw_catalogue import decoded, image_array, truncate, write_png
from PIL import Image

from fashion_clip.ingest.items import array_to_image, encode_jpeg, fit_within, load_image


def test_array_layouts_give_the_same_image() -> None:
    hwc = image_array(0)
    assert np.array_equal(np.asarray(array_to_image(hwc)), hwc)
    assert np.array_equal(np.asarray(array_to_image(hwc.transpose(2, 0, 1))), hwc)
    assert np.array_equal(np.asarray(array_to_image(hwc.astype(np.float32) / 255.0)), hwc)
    grey = array_to_image(hwc[..., 0])
    assert grey.mode == "RGB" and np.array_equal(np.asarray(grey)[..., 2], hwc[..., 0])
    with pytest.raises(ValueError, match="HxWx3"):
        array_to_image(np.zeros((4, 4, 5), dtype=np.uint8))


def test_fit_within_only_shrinks() -> None:
    image = Image.new("RGB", (300, 200))
    assert fit_within(image, 150).size == (150, 100)
    assert fit_within(image, 400) is image
    assert fit_within(image, None) is image


def test_files_decode_fully_or_fail(tmp_path: Path) -> None:
    good = write_png(tmp_path / "a.png", seed=1)
    palette = tmp_path / "p.png"
    Image.fromarray(image_array(2)).convert("P").save(palette)
    assert load_image(good).mode == "RGB" and load_image(palette).mode == "RGB"
    with pytest.raises(OSError):
        load_image(truncate(write_png(tmp_path / "b.png", seed=2)))


def test_jpeg_encoding_is_deterministic_rgb() -> None:
    image = array_to_image(image_array(5))
    assert encode_jpeg(image) == encode_jpeg(image)
    assert decoded(encode_jpeg(image)).mode == "RGB"
