"""Write a copy of a shard split whose samples' json carry extra `captions`: reworded by caption augmentation
(data/caption_augment.py) without a language model, so training's random caption pick sees them.

    python -m fashion_clip.ingest.augment_captions --source data/demo_hard/train \\
        --out data/demo_hard_aug/train --per-caption 2 --seed 0

Each source shard becomes a shard of the same name; images and other members are copied byte for byte.
The source is only read; an existing --out is refused. Corrupt samples are skipped and counted.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf
from tqdm import tqdm

from fashion_clip.data.epoch_stream import derive_seed
from fashion_clip.data.manifest import Manifest, read_manifest, write_manifest
from fashion_clip.data.raw_samples import RawSample, raw_samples
from fashion_clip.data.samples import CaptionTransform, decode_sample
from fashion_clip.errors import UserError, exit_on_user_error
from fashion_clip.ingest.run_summary import exit_code, print_summary
from fashion_clip.ingest.shard_writer import write_shard
from fashion_clip.ingest.split_writer import SplitResult

DEFAULT_SETTINGS = "caption_augment/default.yaml"  # in the config directory, conf/
# draws per wanted caption before giving up on finding a new wording (short captions have few)
ATTEMPTS = 4


def load_augment(settings: Path | None) -> CaptionTransform:
    """The augmentation a settings file describes (the shipped `caption_augment=default` when None), so
    the offline captions and training-time augmentation share one configuration."""
    if settings is None:
        text = resources.files("fashion_clip.conf").joinpath(DEFAULT_SETTINGS).read_text(encoding="utf-8")
        return instantiate(OmegaConf.create(text))
    if not settings.is_file():
        raise UserError(f"--settings '{settings}' does not exist; copy conf/{DEFAULT_SETTINGS} and edit it")
    return instantiate(OmegaConf.load(settings))


def augmented_captions(
    captions: Sequence[str], augment: CaptionTransform, per_caption: int, rng: random.Random
) -> list[str]:
    """The captions followed by up to `per_caption` new wordings of each, none repeated."""
    result = list(captions)
    for caption in captions:
        wanted = len(result) + per_caption
        for _ in range(per_caption * ATTEMPTS):
            if len(result) == wanted:
                break
            wording = augment(caption, rng)
            if wording not in result:
                result.append(wording)
    return result


def augmented_sample(sample: RawSample, augment: CaptionTransform, per_caption: int, seed: int) -> RawSample:
    """The sample with its json's `captions` extended; raises, as training's reader would, on a corrupt one.
    The RNG depends on the seed and the sample key only, so output does not depend on read order."""
    meta, captions, _ = decode_sample(sample, transform=lambda image: image)
    rng = random.Random(derive_seed(seed, sample["__key__"]))
    meta["captions"] = augmented_captions(captions, augment, per_caption, rng)
    return {**sample, "json": json.dumps(meta, ensure_ascii=False)}


def counted(samples: Iterator[RawSample], bar: tqdm) -> Iterator[RawSample]:
    """The samples, each one read moving the progress bar on."""
    for sample in samples:
        bar.update()
        yield sample


def good_samples(
    samples: Iterator[RawSample], rewrite: Callable[[RawSample], RawSample], skipped: list[dict]
) -> Iterator[RawSample]:
    """Rewritten samples; each one that fails is recorded in `skipped` (key, reason) and left out."""
    for sample in samples:
        try:
            yield rewrite(sample)
        except Exception as e:  # any decoder error means a bad sample, never a failed run
            skipped.append({"item": sample.get("__key__", "?"), "reason": "corrupt sample", "detail": str(e)})


def augment_split(
    source: Path, out: Path, augment: CaptionTransform, per_caption: int, seed: int, progress: bool = True
) -> SplitResult:
    """`out` as the augmented copy of the split directory `source`: shard by shard, then its manifest."""
    if out.exists():
        raise UserError(
            f"--out {out} already exists; give a new directory (existing shards are never rewritten)"
        )
    manifest = read_manifest(source)
    out.mkdir(parents=True)
    result = Manifest(dataset=manifest.dataset, pattern=manifest.pattern)
    rewrite = functools.partial(augmented_sample, augment=augment, per_caption=per_caption, seed=seed)
    with tqdm(
        total=manifest.num_samples, desc=f"augment {source}", unit="sample", disable=not progress
    ) as bar:
        for shard in manifest.shards:
            samples = counted(raw_samples([str(source / shard.name)]), bar)
            result.shards.append(
                write_shard(out / shard.name, good_samples(samples, rewrite, result.skipped))
            )
    write_manifest(out, result)
    return SplitResult(split=out.name, directory=out, manifest=result, resumed_shards=0, truncated=False)


def parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(prog="python -m fashion_clip.ingest.augment_captions", description=__doc__)
    p.add_argument("--source", required=True, type=Path, help="split directory holding manifest.json")
    p.add_argument("--out", required=True, type=Path, help="new directory for the augmented shards")
    p.add_argument("--per-caption", type=int, default=2, help="new wordings added per caption (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seeds every sample's wordings (default 0)")
    p.add_argument(
        "--settings", type=Path, help=f"augmentation settings; default: the shipped {DEFAULT_SETTINGS}"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: write, print the summary, exit non-zero when nothing was written."""
    args = parser().parse_args(argv)
    if args.per_caption < 1:
        raise UserError(f"--per-caption {args.per_caption}: give at least 1")
    result = augment_split(
        args.source, args.out, load_augment(args.settings), args.per_caption, args.seed, not args.no_progress
    )
    print_summary([result])
    return exit_code([result])


if __name__ == "__main__":
    raise SystemExit(main())
