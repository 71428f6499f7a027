"""One model on one split: embed the split once, score it under each protocol, return the records
(`evaluation.front_door` builds these calls from a run's config)."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial

import torch
from omegaconf import DictConfig

from fashion_clip.data.catalogue_reader import ShardCatalogue
from fashion_clip.errors import ConfigError
from fashion_clip.models.factory import ClipBundle
from fashion_clip.preflight import check_split
from fashion_clip.records import EvaluationRecord
from fashion_clip.retrieval.embedding import EmbeddedSplit, borrowed, embed_catalogue

log = logging.getLogger(__name__)

Protocol = Callable[..., dict[str, float]]


def split_spec(data: DictConfig, split: str) -> str | list[str]:
    """The shard spec of the chosen split, with errors naming the key a user must set."""
    spec = data.get(check_split(split))
    if not spec:
        raise ConfigError(f"data.{split} is not set for data={data.get('name')}: give the {split} shard spec")
    return spec


def _accepts(protocol: Protocol, argument: str) -> bool:
    """Whether a protocol (possibly a Hydra partial) takes `argument`: only some need the text tower."""
    target = protocol.func if isinstance(protocol, partial) else protocol
    return argument in inspect.signature(target).parameters


def score_split(
    split: EmbeddedSplit,
    protocols: Mapping[str, Protocol],
    bundle: ClipBundle,
    device: torch.device,
) -> dict[str, tuple[dict[str, float], float]]:
    """Metrics and seconds per protocol; the model and tokenizer go to those that embed prompts."""
    towers = {"model": bundle.model, "tokenizer": bundle.tokenizer}
    scored = {}
    for name, protocol in protocols.items():
        extra = {key: value for key, value in towers.items() if _accepts(protocol, key)}
        start = time.perf_counter()
        metrics = protocol(split, device=device, **extra)
        scored[name] = (metrics, time.perf_counter() - start)
    return scored


def embed_shards(
    bundle: ClipBundle,
    spec: str | list[str],
    split_name: str,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 2,
) -> EmbeddedSplit:
    """A shard split embedded with the model's eval transform (no augmentation) in file order."""
    dataset = ShardCatalogue(spec, bundle.val_transform, split_name)
    return embed_catalogue(
        bundle.model, bundle.tokenizer, dataset, batch_size, num_workers, device, description=split_name
    )


def evaluate_bundle(
    bundle: ClipBundle,
    spec: str | list[str],
    protocols: Mapping[str, Protocol],
    identity: Mapping[str, str | None],
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 2,
) -> tuple[list[EvaluationRecord], EmbeddedSplit]:
    """Records for one model on one split; `identity` holds the EvaluationRecord fields but metrics."""
    with borrowed(bundle.model):  # protocols such as zeroshot move the model and put it in eval mode
        split = embed_shards(bundle, spec, str(identity["split"]), device, batch_size, num_workers)
        scored = score_split(split, protocols, bundle, device)
    if split.skipped:
        log.warning("%d corrupt samples were skipped in the %s split", split.skipped, identity["split"])
    records = [
        EvaluationRecord(
            **identity, protocol=name, metrics=metrics | {"skipped": split.skipped}, seconds=seconds
        )
        for name, (metrics, seconds) in scored.items()
    ]
    return records, split
