"""Several train sources mixed by weight: `data.train: [{spec: DIR, weight: 3}, {spec: DIR2, weight: 1}]`.

Drawn as open_clip_train draws `--train-data a::b --train-data-upsampling-factors 3::1`: every shard of a
source carries the source's weight and shards are drawn with replacement in proportion to it (so only in
resampled mode), which makes each sample of a source `weight` times as likely as a sample of weight 1. A
source's expected share of the samples is therefore `weight x samples` over the sum of those products.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from fashion_clip.data.manifest import read_manifest
from fashion_clip.data.shard_spec import count_samples, resolve_shards
from fashion_clip.errors import ConfigError, UserError

log = logging.getLogger(__name__)

SOURCE_KEYS = ("spec", "weight", "name")
SOURCE_FORM = "{spec: DIR, weight: W} (name: optional)"


@dataclass(frozen=True)
class Source:
    """One weighted train source: its shard spec, upsampling weight and, optionally, its name in the logs."""

    spec: str | list[str]
    weight: float
    name: str | None = None


@dataclass(frozen=True)
class SourceShare:
    """A source as the mix logs it: samples from its manifest, and its expected share of the drawn samples
    (None where a source has no manifest, so its size is unknown)."""

    label: str
    spec: str | list[str]
    weight: float
    samples: int | None
    share: float | None


def is_weighted(train: Any) -> bool:
    """Whether `data.train` lists weighted sources (an item is a mapping) rather than one split's spec."""
    return (
        not isinstance(train, str | Mapping)
        and isinstance(train, Sequence)
        and any(isinstance(item, Mapping) for item in train)
    )


def _weight(key: str, value: Any) -> float:
    """A source's weight: a finite number above 0 (a weight of 0 would never draw the source)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"{key}={value!r}: a source's weight must be a number above 0 (e.g. {key}=1)")
    return float(value)


def _source(index: int, item: Any) -> Source:
    """One item of the list: a mapping with `spec` and optional `weight` (1) and `name`, or a bare spec."""
    key = f"data.train[{index}]"
    item = {"spec": item} if isinstance(item, str) else item
    if not isinstance(item, Mapping):
        raise ConfigError(f"{key}={item!r}: give a shard spec or {SOURCE_FORM}")
    unknown = sorted(set(item) - set(SOURCE_KEYS))
    if unknown:
        raise ConfigError(f"{key} has unknown keys {unknown}: a source is {SOURCE_FORM}")
    spec = item.get("spec")
    if not spec:
        raise ConfigError(f"{key}.spec is not set: give the source's shard directory or pattern")
    name = item.get("name")
    return Source(
        spec if isinstance(spec, str) else [str(part) for part in spec],
        _weight(f"{key}.weight", item.get("weight", 1)),
        None if name is None else str(name),
    )


def parse_sources(train: Sequence[Any], resampled: bool) -> list[Source]:
    """The weighted sources of `data.train`, checked without reading them: weights are drawn with
    replacement, as open_clip_train requires --dataset-resampled for its upsampling factors."""
    sources = [_source(index, item) for index, item in enumerate(train)]
    if not resampled:
        raise ConfigError(
            "data.train lists weighted sources, whose shards are drawn with replacement by weight: set "
            "data.resampled=true (an epoch is then data.samples_per_epoch samples, by default all the "
            "sources' samples once)"
        )
    return sources


def flat_spec(sources: Sequence[Source]) -> list[str]:
    """Every source's spec in one list: the split as the unweighted code reads it (sizes, `train_eval`)."""
    return [part for s in sources for part in ([s.spec] if isinstance(s.spec, str) else s.spec)]


def _source_urls(index: int, source: Source) -> list[str]:
    """A source's shard urls; an error names the source's place in the list and its spec."""
    key = f"data.train[{index}]"
    try:
        return resolve_shards(source.spec, f"train[{index}].spec")
    except UserError as error:
        if str(error).startswith(key):
            raise
        raise type(error)(f"{key}.spec={source.spec!r}: {error}") from error


def weighted_shards(sources: Sequence[Source]) -> tuple[list[str], list[float]]:
    """Every source's shard urls in list order, each with its source's weight (open_clip_train's per-shard
    upsampling factors)."""
    urls = [_source_urls(index, source) for index, source in enumerate(sources)]
    weights = [source.weight for source, mine in zip(sources, urls, strict=True) for _ in mine]
    return [url for mine in urls for url in mine], weights


def weighted_draws(urls: Sequence[str], weights: Sequence[float], seed: int) -> Iterator[str]:
    """Shard urls drawn with replacement in proportion to their weights, endlessly, as open_clip_train's
    ResampledShards2 draws them; from `seed` alone, so a resumed worker draws the same shards again."""
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(weights))
    while True:
        yield rng.choices(urls, cum_weights=cumulative)[0]


def _name(source: Source) -> str:
    """How the logs name a source (after its index): its `name`, else the dataset its manifest names."""
    if source.name:
        return source.name
    path = Path(source.spec).expanduser() if isinstance(source.spec, str) else None
    return read_manifest(path).dataset if path is not None and path.is_dir() else "source"


def source_mix(sources: Sequence[Source]) -> list[SourceShare]:
    """Each source's samples and expected share (`weight x samples` over their sum), labelled by index."""
    samples = [count_samples(source.spec) for source in sources]
    total = None if None in samples else sum(s.weight * n for s, n in zip(sources, samples, strict=True))
    return [
        SourceShare(
            f"{index}-{_name(source)}",
            source.spec,
            source.weight,
            count,
            None if not total else source.weight * count / total,
        )
        for index, (source, count) in enumerate(zip(sources, samples, strict=True))
    ]


def mix_table(shares: Sequence[SourceShare]) -> str:
    """The mix as a Markdown table: readable in the run log and in TensorBoard's text tab."""
    rows = [
        f"| {s.label} | {s.spec} | {s.weight:g} | {'?' if s.samples is None else s.samples} | "
        f"{'? (no manifest)' if s.share is None else f'{s.share:.1%}'} |"
        for s in shares
    ]
    header = "| source | spec | weight | samples | expected share |\n|---|---|---|---|---|"
    return "\n".join([header, *rows])


def mix_hparams(shares: Sequence[SourceShare]) -> dict[str, Any]:
    """The mix as hyperparameters, `data/mix/<label>/<field>`, so runs with other mixes compare."""
    return {
        f"data/mix/{s.label}/{field}": value
        for s in shares
        for field, value in (("weight", s.weight), ("samples", s.samples), ("share", s.share))
    }


@rank_zero_only
def log_mix(shares: Sequence[SourceShare], loggers: Sequence[Logger]) -> None:
    """Say the mix in the run log and give it to every logger (as text too where TensorBoard shows it),
    once: on rank 0."""
    table = mix_table(shares)
    log.info("train sources, shards drawn with replacement by weight:\n%s", table)
    for logger in loggers:
        logger.log_hyperparams(mix_hparams(shares))
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text("data/mix", table)
