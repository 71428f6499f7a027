"""Read a result's image back from its shard (tar member by key) or file, and shrink it to a data URI."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

from PIL import Image

from fashion_clip.data.samples import IMAGE_EXTENSIONS
from fashion_clip.data.shard_spec import REMOTE_PREFIXES

TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz")
THUMBNAIL_SIDE = 192
JPEG_QUALITY = 85


def read_shard_image(shard: str | Path, key: str) -> Image.Image:
    """The `{key}.{jpg,jpeg,png,webp}` member of a WebDataset tar, decoded."""
    with tarfile.open(shard) as tar:
        names = set(tar.getnames())
        member = next((f"{key}.{ext}" for ext in IMAGE_EXTENSIONS if f"{key}.{ext}" in names), None)
        if member is None:
            raise KeyError(f"no image member for key {key!r} in {shard}")
        data = tar.extractfile(member).read()
    return decoded(data)


def decoded(data: bytes) -> Image.Image:
    """Fully decoded RGB image from encoded bytes."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def read_catalogue_image(source: str, key: str) -> Image.Image:
    """An indexed image from where the index says it lives; remote shards are not fetched."""
    if source.startswith(REMOTE_PREFIXES):
        raise ValueError(f"{source} is remote; thumbnails are read from local shards and files only")
    if source.endswith(TAR_SUFFIXES):
        return read_shard_image(source, key)
    return decoded(Path(source).read_bytes())


def image_location(source: str, key: str) -> str:
    """Where a user finds the image: `shard.tar#key` for a shard member, else the file path."""
    return f"{source}#{key}" if source.endswith(TAR_SUFFIXES) else source


def thumbnail_data_uri(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A small JPEG as a `data:` URI, so the results page is one self-contained file."""
    small = image.copy()
    small.thumbnail((side, side))
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
