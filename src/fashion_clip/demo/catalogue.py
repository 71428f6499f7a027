"""Writing the demo catalogue: every planned product's views as WebDataset shards per split, a manifest
each, and a stamp of the arguments, so the pipeline can be trained and evaluated on CPU in minutes without
downloading a real dataset."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from fashion_clip.data.manifest import Manifest, read_manifest, sha256_file
from fashion_clip.demo.presets import DEFAULT_DIFFICULTY, DEFAULT_PRODUCTS, Difficulty
from fashion_clip.demo.products import Product, plan_products
from fashion_clip.demo.rendering import render_views
from fashion_clip.ingest.shard_writer import ShardSink
from fashion_clip.utils.files import atomic_output

STAMP_NAME = "catalogue.json"
GENERATOR_VERSION = 1
JPEG_QUALITY = 95


def _jpeg(image: Image.Image) -> bytes:
    """Encode a view; 4:4:4 chroma keeps thin coloured stripes intact at 96 px."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def product_samples(
    product: Product,
    split: str,
    first_index: int,
    image_size: int,
    views: tuple[int, int] = DEFAULT_DIFFICULTY.views,
) -> Iterator[dict]:
    """WebDataset samples for every view of a product, keyed `{split}_{index:06d}`."""
    meta = json.dumps(product.metadata()).encode("utf-8")
    caption = product.captions[0].encode("utf-8")
    for offset, view in enumerate(render_views(product, image_size, views)):
        key = f"{split}_{first_index + offset:06d}"
        yield {"__key__": key, "jpg": _jpeg(view), "txt": caption, "json": meta}


def _stamp_fields(
    products: Mapping[str, int] | None, image_size: int | None, seed: int | None, shard_size: int | None
) -> dict:
    """The stamp's entries besides the difficulty, in its order; None stands for an entry not asked about."""
    return {
        "version": GENERATOR_VERSION,
        "products": None if products is None else dict(products),
        "image_size": image_size,
        "seed": seed,
        "shard_size": shard_size,
    }


def _generation_params(
    products: Mapping[str, int], image_size: int, seed: int, shard_size: int, difficulty: Difficulty
) -> dict:
    """What determines the catalogue's bytes, stamped beside it so a rerun knows whether it may skip."""
    params = _stamp_fields(products, image_size, seed, shard_size)
    # the default catalogue's stamp has no difficulty entry, so it keeps the bytes it always had
    return params if difficulty == DEFAULT_DIFFICULTY else params | {"difficulty": difficulty.as_json()}


def generate_demo_catalogue(
    out_dir: str | Path,
    products: Mapping[str, int] = DEFAULT_PRODUCTS,
    image_size: int = 96,
    seed: int = 0,
    shard_size: int = 500,
    progress: bool = False,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
) -> dict[str, Manifest]:
    """Write `out_dir/{split}/demo-{split}-NNNNNN.tar` and manifests; same arguments give the same bytes.

    The stamp file is removed first and written last, so only a run that finished counts as complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / STAMP_NAME
    stamp.unlink(missing_ok=True)
    plan = plan_products(products, seed, difficulty)
    manifests = {}
    bar = tqdm(total=sum(products.values()), unit="product", desc="demo catalogue", disable=not progress)
    with bar:
        for split, items in plan.items():
            with ShardSink(out / split, f"demo-{split}", shard_size) as sink:
                for product in items:
                    for sample in product_samples(
                        product, split, sink.num_samples, image_size, difficulty.views
                    ):
                        sink.write(sample)
                    bar.update()
                manifests[split] = sink.close()
    params = _generation_params(products, image_size, seed, shard_size, difficulty)
    with atomic_output(stamp) as tmp:
        tmp.write_text(json.dumps(params, indent=2))
    return manifests


def catalogue_is_complete(
    out_dir: str | Path,
    products: Mapping[str, int] | None = None,
    image_size: int | None = None,
    seed: int | None = None,
    shard_size: int | None = None,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
) -> bool:
    """True if a finished catalogue with intact shards is there, made with the arguments that are given.

    `difficulty` is always compared, so a hard catalogue never passes for a default one or vice versa.
    """
    out = Path(out_dir)
    try:
        stamp = json.loads((out / STAMP_NAME).read_text())
        manifests = [read_manifest(out / split) for split in stamp["products"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    wanted = _stamp_fields(products, image_size, seed, shard_size)
    if any(value is not None and stamp.get(key) != value for key, value in wanted.items()):
        return False
    if stamp.get("difficulty", DEFAULT_DIFFICULTY.as_json()) != difficulty.as_json():
        return False
    return all(
        (out / split / shard.name).is_file() and sha256_file(out / split / shard.name) == shard.sha256
        for split, manifest in zip(stamp["products"], manifests, strict=True)
        for shard in manifest.shards
    )
