"""LightningDataModule streaming image-caption WebDataset shards for train, validation and test."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import lightning as L
import torch
import webdataset as wds

from fashion_clip.data.samples import CollateWithTokenizer, DecodeOrSkip
from fashion_clip.data.shard_spec import count_samples, resolve_shards
from fashion_clip.errors import ConfigError

ShardSpec = str | Sequence[str]


def every_nth(samples: Iterable[dict], start: int, step: int) -> Iterator[dict]:
    """Split evaluation data across ranks by sample, not shard, so no rank is left without samples
    when a split has fewer shards than ranks (the recall metric's gather needs every rank to have some)."""
    return itertools.islice(samples, start, None, step)


class WebDatasetDataModule(L.LightningDataModule):
    """Shards in, tokenized batches out; transforms and tokenizer come from the model preset."""

    def __init__(
        self,
        train: ShardSpec | None = None,
        val: ShardSpec | None = None,
        test: ShardSpec | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        samples_per_epoch: int | None = None,
        train_transform: Callable | None = None,
        val_transform: Callable | None = None,
        tokenizer: Callable | None = None,
        name: str = "shards",
    ) -> None:
        super().__init__()
        if resampled and not samples_per_epoch and not (train and count_samples(train)):
            raise ConfigError(
                "data.resampled=true needs data.samples_per_epoch (or a train directory with a manifest)"
            )
        self.specs = {"train": train, "val": val, "test": test}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.resampled = resampled
        self.samples_per_epoch = samples_per_epoch
        self.train_transform = train_transform
        self.val_transform = val_transform
        self.tokenizer = tokenizer
        self.name = name

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

    def _pipeline(self, split: str) -> wds.DataPipeline:
        """The WebDataset pipeline for a split; training shuffles and may resample shards forever."""
        if self.tokenizer is None or self.train_transform is None or self.val_transform is None:
            raise ValueError("the data module needs the model's transforms and tokenizer (see train.py)")
        urls = resolve_shards(self._spec(split), split)
        train = split == "train"
        if train and self.resampled:
            source = [wds.ResampledShards(urls)]
        else:
            # split before shuffling: ranks and workers shuffle with different seeds and must not overlap
            split_by_node = [wds.split_by_node] if train else []
            source = [wds.SimpleShardList(urls), *split_by_node, wds.split_by_worker]
            source += [wds.shuffle(len(urls))] if train else []
        batch_size = self.batch_size if train else self.eval_batch_size
        stages = [
            *source,
            wds.tarfile_to_samples(handler=wds.warn_and_continue),
            *([] if train else [functools.partial(every_nth, start=self._rank(), step=self._world_size())]),
            *([wds.shuffle(self.shuffle_buffer)] if train else []),
            DecodeOrSkip(self.train_transform if train else self.val_transform, random_caption=train),
            wds.batched(batch_size, collation_fn=CollateWithTokenizer(self.tokenizer), partial=not train),
        ]
        pipeline = wds.DataPipeline(*stages)
        return self._sized(pipeline, split, batch_size)

    def _sized(self, pipeline: wds.DataPipeline, split: str, batch_size: int) -> wds.DataPipeline:
        """Give the epoch a length so progress bars and the LR schedule know how many steps it has."""
        workers = max(1, self.num_workers)
        if split == "train" and self.resampled:
            samples = self.samples_per_epoch or count_samples(self._spec(split))
            per_worker = math.ceil(samples / (batch_size * self._world_size() * workers))
            return pipeline.with_epoch(nbatches=per_worker).with_length(per_worker * workers, silent=True)
        samples = count_samples(self._spec(split))
        if samples is None:
            return pipeline
        per_rank = samples / self._world_size()
        batches = per_rank // batch_size if split == "train" else math.ceil(per_rank / batch_size)
        return pipeline.with_length(max(1, int(batches)), silent=True)

    def _loader(self, split: str) -> torch.utils.data.DataLoader:
        """Batching happens in the pipeline, so the loader only parallelises it across workers."""
        return torch.utils.data.DataLoader(
            self._pipeline(split),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test")
