"""open_clip_train's data pipeline alone, timed: `python openclip_pipeline_runner.py --shards URLS ...`.

Runs in open_clip_train's own virtualenv (.venv-openclip: its data.py needs webdataset<=0.2.86), so it
imports nothing from fashion_clip. The loader is the one open_clip_train trains from: `get_wds_dataset`
with the transforms `create_model_and_transforms` returns and the model's tokenizer, one data worker.
Prints one JSON line: samples/s over the timed batches and the bytes of one batch's image tensor.
`timed_batches` is also data_pipeline.py's timing loop, so both sides are timed by the same code; the
open_clip imports stay inside `openclip_images` for that reason (open_clip_train.data does not import in
our .venv).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch


def timed_batches(images: Iterator[torch.Tensor], warmup: int, batches: int) -> dict[str, Any]:
    """Samples/s of `batches` image batches after `warmup` (worker start, shuffle buffer filling), and
    the bytes and dtype of one batch's image tensor, what crosses from the worker through shared memory."""
    for _ in itertools.islice(images, warmup):
        pass
    samples = timed = 0
    start = time.perf_counter()
    for batch in itertools.islice(images, batches):
        samples += batch.shape[0]
        timed += 1
    seconds = time.perf_counter() - start
    if timed < batches:
        raise RuntimeError(f"the shards ran out after {warmup + timed} batches; {warmup + batches} needed")
    return {
        "samples_per_s": samples / seconds,
        "batch_bytes": batch.element_size() * batch.nelement(),
        "dtype": str(batch.dtype).removeprefix("torch."),
    }


def loader_args(args: argparse.Namespace) -> argparse.Namespace:
    """The fields of open_clip_train's parsed arguments that `get_wds_dataset` reads, set as its CLI
    would for one process with one data worker and no resampling."""
    samples = (args.warmup + args.batches) * args.batch_size
    return argparse.Namespace(
        train_data=args.shards,
        val_data=args.shards,
        train_num_samples=samples,
        val_num_samples=samples,
        dataset_resampled=False,
        train_data_upsampling_factors=None,
        batch_size=args.batch_size,
        workers=1,
        world_size=1,
        rank=0,
        seed=args.seed,
    )


def openclip_images(args: argparse.Namespace) -> Iterator[torch.Tensor]:
    """The image tensor of each batch of open_clip_train's train (or eval) loader."""
    import open_clip
    from open_clip_train.data import get_wds_dataset

    _, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(args.model)
    is_train = args.split == "train"
    data = get_wds_dataset(
        loader_args(args),
        preprocess_train if is_train else preprocess_val,
        is_train=is_train,
        epoch=0,
        tokenizer=open_clip.get_tokenizer(args.model),
    )
    return (images for images, _ in data.dataloader)


def main(argv: Sequence[str] | None = None) -> int:
    """Time the loader and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--shards", required=True, help="'::'-separated shard paths, as --train-data takes")
    parser.add_argument("--split", choices=["train", "eval"], default="train")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(timed_batches(openclip_images(args), args.warmup, args.batches)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
