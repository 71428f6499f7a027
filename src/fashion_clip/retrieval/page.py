"""Self-contained HTML pages of search results (and the failure gallery): thumbnails read back from
their shard (tar member by key) or file and shrunk to base64 JPEG data URIs, captions and scores."""

from __future__ import annotations

import base64
import functools
import html
import io
import logging
import tarfile
from pathlib import Path

from PIL import Image

from fashion_clip.data.samples import IMAGE_EXTENSIONS
from fashion_clip.data.shard_spec import REMOTE_PREFIXES
from fashion_clip.errors import ConfigError
from fashion_clip.retrieval.search import ProductHit
from fashion_clip.utils.files import atomic_output
from fashion_clip.utils.metadata_text import metadata_html

log = logging.getLogger(__name__)

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


GENERATOR = "fashion-clip search"
GENERATOR_TAG = f'<meta name="generator" content="{GENERATOR}">'
MARKER_BYTES = 512
STYLE = (
    "body{font-family:sans-serif;margin:2em}"
    ".grid{display:flex;flex-wrap:wrap;gap:1em}"
    ".card{width:200px;border:1px solid #ddd;padding:.5em;font-size:.85em}"
    ".card img{width:192px;height:192px;object-fit:contain;background:#f4f4f4}"
    ".missing{width:192px;height:192px;background:#eee;color:#888;display:flex;align-items:center;"
    "justify-content:center}"
    ".query{border-top:2px solid #444;margin-top:2em;padding-top:.5em}"
    ".label{font-weight:bold;margin:.8em 0 .3em}"
    ".truth{border:2px solid #1f77b4}"
    ".same{color:#2e7d32}.other{color:#c62828}"
)
THUMBNAIL_CACHE = 512


@functools.lru_cache(maxsize=THUMBNAIL_CACHE)
def record_thumbnail(source: str, key: str) -> str | None:
    """An image as a data URI, or None (with a warning) when it cannot be read back; cached, since a
    page often shows one product several times."""
    try:
        return thumbnail_data_uri(read_catalogue_image(source, key))
    except (OSError, KeyError, ValueError, tarfile.TarError) as e:  # moved shard, remote source, bad bytes
        log.warning("no thumbnail for %s in %s: %s", key, source, e)
        return None


def hit_thumbnail(hit: ProductHit) -> str | None:
    """The hit's image as a data URI, or None when it cannot be read back."""
    return record_thumbnail(hit.record.source, hit.record.key)


def image_tag(uri: str | None, alt: str) -> str:
    """An <img> for a data URI, or a grey box saying the image is unavailable."""
    if uri is None:
        return '<div class="missing">image unavailable</div>'
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def result_card(hit: ProductHit, uri: str | None, note: str = "", css: str = "card") -> str:
    """One product: thumbnail, rank, score, product id, category, caption and where the image lives;
    `note` (already HTML) adds a line, `css` the card's classes. The category goes through
    `metadata_html`: index files written before readers turned metadata into text hold raw json values."""
    r = hit.record
    return (
        f'<div class="{css}">{image_tag(uri, r.caption)}'
        f"<div><b>#{hit.rank}</b> score {hit.score:.4f}</div>"
        f"<div>{html.escape(r.product_id)} &middot; {metadata_html(r.category)}</div>{note}"
        f"<div>{html.escape(r.caption)}</div>"
        f'<div style="color:#888">{html.escape(image_location(r.source, r.key))}</div></div>'
    )


def html_document(title: str, body: str) -> str:
    """A whole page around `body`: inline style, no script and nothing fetched, so it opens offline."""
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">{GENERATOR_TAG}'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def render_page(title: str, hits: list[ProductHit], query_image: str | None = None) -> str:
    """The whole page; an image query is shown above its results."""
    query = f"<h2>query</h2>{image_tag(query_image, 'query image')}" if query_image else ""
    cards = "".join(result_card(hit, hit_thumbnail(hit)) for hit in hits)
    return html_document(title, f'{query}<div class="grid">{cards}</div>')


def written_by_search(path: Path) -> bool:
    """Whether an existing file is a page this tool wrote earlier (safe to replace)."""
    with path.open("rb") as f:
        return GENERATOR_TAG.encode() in f.read(MARKER_BYTES)


def refuse_foreign_file(path: Path, key: str = "--html") -> None:
    """Stop when the page would replace a file this tool did not write (checked before any work);
    `key` is the option that named the file."""
    if path.exists() and (path.is_dir() or not written_by_search(path)):
        raise ConfigError(
            f"{key} '{path}' already exists and is not a page written by {GENERATOR}: "
            f"give another file name or remove it"
        )


def write_page(path: str | Path, page: str, key: str = "--html") -> Path:
    """Write the page atomically; replace an earlier results page, never any other file."""
    path = Path(path)
    refuse_foreign_file(path, key)
    with atomic_output(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
