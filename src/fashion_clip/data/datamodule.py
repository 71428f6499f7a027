"""LightningDataModule streaming image-caption WebDataset shards for train, validation and test."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import webdataset as wds
from lightning.pytorch.strategies import Strategy
from omegaconf import DictConfig, OmegaConf

from fashion_clip.data.batching import make_composer
from fashion_clip.data.epoch_stream import EpochStream
from fashion_clip.data.image_pipeline import worker_transform
from fashion_clip.data.raw_samples import first_samples, is_sample_count, raw_samples, slice_size
from fashion_clip.data.resumable import ResumableLoader
from fashion_clip.data.samples import CaptionTransform, CollateWithTokenizer, DamagedShardsError, DecodeOrSkip
from fashion_clip.data.shard_spec import count_samples, resolve_shards, shard_sizes
from fashion_clip.data.weighted_sources import (
    flat_spec,
    is_weighted,
    log_mix,
    parse_sources,
    source_mix,
    weighted_shards,
)
from fashion_clip.errors import ConfigError

ShardSpec = str | Sequence[str]
# the validation loaders in order: loader i's recall and loss are logged as `VALIDATION_LOADERS[i]/*`
VALIDATION_LOADERS = ("val", "train_eval")


def datamodule_config(data: DictConfig) -> dict[str, Any]:
    """The resolved `data` preset as `WebDatasetDataModule` arguments: all but `name`, which labels results
    and titles, not the data, and `augment`, which the train transform is built with (training.py)."""
    return {
        k: v for k, v in OmegaConf.to_container(data, resolve=True).items() if k not in ("name", "augment")
    }


def every_nth(samples: Iterable[dict], start: int, step: int) -> Iterator[dict]:
    """Split evaluation data across ranks by sample, not shard, so no rank is left without samples
    when a split has fewer shards than ranks (the recall metric's gather needs every rank to have some)."""
    return itertools.islice(samples, start, None, step)


def kept(count: int, start: int, step: int) -> int:
    """How many of `count` items `every_nth(start, step)` keeps."""
    return len(range(start, count, step))


def eval_batches(worker_samples: Sequence[int], batch_size: int) -> int:
    """Batches an evaluation loader yields: each worker batches its own share and ends on its own partial
    batch, and Lightning stops at the loader's length, so a length short of this would drop samples."""
    return max(1, sum(math.ceil(samples / batch_size) for samples in worker_samples))


def epoch_length(sizes: Sequence[int], world: int, workers: int, batch_size: int) -> int:
    """Train batches per epoch on every rank: a lower bound of what any rank's workers yield in any epoch.

    Each epoch deals the shuffled shards to ranks, so a rank holds at least the `len(sizes) // world`
    smallest shards; each worker drops its own last partial batch (under `batch_size` samples). Every
    rank stopping at this same count is what keeps DDP ranks from waiting on each other forever, and an
    epoch shorter than its declared length would end before Lightning runs validation.
    """
    if len(sizes) < world:
        raise ConfigError(
            f"data.train has {len(sizes)} shards for {world} ranks, so a rank would get none: write the "
            "split as more, smaller shards (at least one per rank) or set data.resampled=true"
        )
    smallest = sum(sorted(sizes)[: len(sizes) // world])
    length = math.ceil((smallest - workers * (batch_size - 1)) / batch_size)
    if length < 1 and world > 1:
        raise ConfigError(
            f"data.train: a rank can get as few as {smallest} samples per epoch ({len(sizes) // world} of "
            f"the {len(sizes)} shards), too few for one batch of data.batch_size={batch_size} on each of "
            f"data.num_workers={workers} workers; lower them or set data.resampled=true"
        )
    return max(1, length)


def stop_together(strategy: Strategy, failure: DamagedShardsError | None) -> None:
    """Raise on every rank, at the same train batch, when any rank's data failed its skip check: a rank
    stopping alone would leave the others waiting in their next collective. The message is every failing
    rank's own (which shards, how many samples)."""
    if not strategy.reduce_boolean_decision(failure is not None, all=False):
        return
    messages: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(messages, None if failure is None else str(failure))
    raise DamagedShardsError("\n".join(message for message in messages if message))


class WebDatasetDataModule(L.LightningDataModule):
    """Shards in, tokenized batches out; transforms and tokenizer come from the model preset.

    The train loader is resumable: its position (epoch, batches per data worker) is saved in checkpoints
    and restored on resume, and each epoch's order is a function of `seed` and the epoch. `batching`
    chooses which samples share a train batch (data/batching.py); evaluation splits are never composed.
    `train_eval` (a shard spec, or N: the first N train samples in shard order) is validated beside `val`.
    `caption_augment` rewrites each picked train caption (data/caption_augment.py); evaluation never.
    `max_skip_fraction` stops training when a worker's stream skips more than that fraction of its samples
    as undecodable (samples.SkipTally); under DDP every rank stops at the same batch (`stop_together`).
    `uint8_batches` ships images as uint8 for the module to normalise on its device; `draft_decode` decodes
    train JPEGs at a reduced DCT scale where the crop allows and resizes the crop in torch
    (data/image_pipeline.py).
    `train` may list weighted sources, `[{spec: DIR, weight: 3}, ...]`, drawn by weight in resampled mode
    (data/weighted_sources.py); their mix is logged when a fit starts.
    """

    def __init__(
        self,
        train: ShardSpec | Sequence[Mapping[str, Any]] | None = None,
        val: ShardSpec | None = None,
        test: ShardSpec | None = None,
        train_eval: ShardSpec | int | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        samples_per_epoch: int | None = None,
        train_transform: Callable | None = None,
        val_transform: Callable | None = None,
        tokenizer: Callable | None = None,
        seed: int = 0,
        batching: str = "random",
        batching_pool: int | None = None,
        caption_augment: CaptionTransform | None = None,
        max_skip_fraction: float | None = 0.05,
        uint8_batches: bool = True,
        draft_decode: bool = True,
    ) -> None:
        super().__init__()
        self.compose = make_composer(batching, batch_size, batching_pool)
        self.sources = parse_sources(train, resampled) if is_weighted(train) else None
        train = flat_spec(self.sources) if self.sources else train  # sizes and `train_eval` read it whole
        if resampled and not samples_per_epoch and not (train and count_samples(train)):
            raise ConfigError(
                "data.resampled=true needs data.samples_per_epoch (or a train directory with a manifest)"
            )
        self.specs = {"train": train, "val": val, "test": test, "train_eval": train_eval}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.resampled = resampled
        self.samples_per_epoch = samples_per_epoch
        self.train_transform = train_transform and worker_transform(
            train_transform, uint8_batches, draft_decode
        )
        self.val_transform = val_transform and worker_transform(val_transform, uint8_batches)
        self.tokenizer = tokenizer
        self.seed = seed
        self.caption_augment = caption_augment
        self.max_skip_fraction = max_skip_fraction
        self._train_loader: ResumableLoader | None = None
        self._restored_position: dict[str, Any] | None = None

    def _world_size(self) -> int:
        """Ranks sharing the data: each gets its own shards, so epoch length divides by this."""
        return self.trainer.world_size if self.trainer is not None else 1

    def _rank(self) -> int:
        """This process's rank among those sharing the data."""
        return self.trainer.global_rank if self.trainer is not None else 0

    def _spec(self, split: str) -> ShardSpec:
        """The split's shard spec, with an error naming the config key when it was left empty."""
        spec = self.specs[split]
        if not spec:
            raise ConfigError(f"data.{split} is not set: give the shard spec for the {split} split")
        return spec

    def _collate(self) -> CollateWithTokenizer:
        """Batch collation with the model's tokenizer, once the model's parts are known to be there."""
        if self.tokenizer is None or self.train_transform is None or self.val_transform is None:
            raise ValueError("the data module needs the model's transforms and tokenizer (see train.py)")
        return CollateWithTokenizer(self.tokenizer)

    def _eval_samples(self, split: str) -> tuple[list[Callable], list[int] | None]:
        """Stages yielding this rank's raw samples of an evaluation split, and each data worker's count of
        them (None: unknown without a manifest).

        Shards are dealt to workers, then samples to ranks; a train slice (`train_eval=N`) is read in order
        by every worker and dealt by sample to ranks, then workers, since one shard may hold all of it.
        """
        rank, world, workers = self._rank(), self._world_size(), max(1, self.num_workers)
        by_rank = functools.partial(every_nth, start=rank, step=world)
        spec = self._spec(split)
        if is_sample_count(spec):
            train = self._spec("train")
            first = functools.partial(first_samples, resolve_shards(train, "train"), spec)
            mine = kept(slice_size(spec, count_samples(train)), rank, world)
            return [first, by_rank, wds.split_by_worker], [kept(mine, w, workers) for w in range(workers)]
        sizes = shard_sizes(spec)
        stages = [functools.partial(raw_samples, resolve_shards(spec, split), by_worker=True), by_rank]
        if sizes is None:
            return stages, None
        return stages, [kept(sum(sizes[w::workers]), rank, world) for w in range(workers)]

    def _pipeline(self, split: str) -> wds.DataPipeline:
        """An evaluation split in shard order, read with the eval transform and each sample's first caption,
        batched per worker with a final partial batch; its exact length when the sizes are known."""
        stages, worker_samples = self._eval_samples(split)
        pipeline = wds.DataPipeline(
            *stages,
            DecodeOrSkip(self.val_transform, random_caption=False),
            wds.batched(self.eval_batch_size, collation_fn=self._collate(), partial=True),
        )
        if worker_samples is None:
            return pipeline
        return pipeline.with_length(eval_batches(worker_samples, self.eval_batch_size), silent=True)

    def _train_stream(self) -> EpochStream:
        """The train split as a seeded, resumable stream, with an epoch length when it can be known."""
        collate = self._collate()
        spec = self._spec("train")
        world, workers = self._world_size(), max(1, self.num_workers)
        samples = count_samples(spec)
        resampled_batches = length = None
        if self.resampled:
            budget = self.samples_per_epoch or samples
            resampled_batches = math.ceil(budget / (self.batch_size * world * workers))
            length = resampled_batches * workers
        elif samples is not None:
            length = epoch_length(shard_sizes(spec), world, workers, self.batch_size)
        elif world > 1:
            raise ConfigError(
                f"data.train={spec!r} has no manifest, so {world} ranks cannot agree on an epoch length and "
                "one would wait forever for the others: give a split directory with a manifest.json or set "
                "data.resampled=true data.samples_per_epoch=N"
            )
        urls, weights = weighted_shards(self.sources) if self.sources else (resolve_shards(spec), None)
        return EpochStream(
            urls,
            DecodeOrSkip(self.train_transform, random_caption=True, caption_augment=self.caption_augment),
            collate,
            batch_size=self.batch_size,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
            rank=self._rank(),
            world_size=world,
            resampled_batches=resampled_batches,
            length=length,
            compose=self.compose,
            max_skip_fraction=self.max_skip_fraction,
            weights=weights,
        )

    def setup(self, stage: str) -> None:
        """A fit over weighted sources starts by saying their mix (run log, every logger's hparams)."""
        if stage == "fit" and self.sources:
            log_mix(source_mix(self.sources), self.trainer.loggers if self.trainer is not None else [])

    def _loader(self, split: str) -> torch.utils.data.DataLoader:
        """Batching happens in the pipeline, so the loader only parallelises it across workers."""
        return torch.utils.data.DataLoader(
            self._pipeline(split),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )

    def _train_position(self) -> dict[str, Any] | None:
        """Where training data stands: the live loader's position, else one restored from a checkpoint."""
        return self._train_loader.state_dict() if self._train_loader is not None else self._restored_position

    def train_dataloader(self) -> ResumableLoader:
        """A fresh loader continues where the previous one (or the restored checkpoint) left off."""
        position = self._train_position()
        loader = ResumableLoader(self._train_stream(), self.num_workers, pin_memory=torch.cuda.is_available())
        if position is not None:
            loader.load_state_dict(position)
        self._train_loader = loader
        return loader

    def val_dataloader(self) -> torch.utils.data.DataLoader | list[torch.utils.data.DataLoader]:
        """The val split; with `train_eval` set, the train slice as a second loader (VALIDATION_LOADERS)."""
        if self.specs["train_eval"] is None:
            return self._loader("val")
        return [self._loader(name) for name in VALIDATION_LOADERS]

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Under DDP with the skip check on, every train batch is where all ranks learn of a failed check."""
        if self.trainer is not None and self.trainer.training and self._coordinates_failures():
            stop_together(self.trainer.strategy, self._train_loader.failure if self._train_loader else None)
        return batch

    def _coordinates_failures(self) -> bool:
        """Whether a skip-check failure must wait for every rank (on one process the loader raises it)."""
        return self._world_size() > 1 and self.max_skip_fraction is not None

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: Lightning restores it before anything asks for the train loader
        (its own loader-state restore is skipped when `configure_optimizers` builds the loader early)."""
        position = self._train_position()
        return {"train_position": position} if position is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Called on resume before the train loader exists; `train_dataloader()` starts from it."""
        self._restored_position = state_dict.get("train_position")
        self._train_loader = None
