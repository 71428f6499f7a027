"""Visual concept prototypes: each concept's mean image embedding over its example images.

The example images (`concept_images.npz`, catalogue keys) are read from the training shards once and
kept encoded (a large knowledge base's decoded images would not fit in memory); each refresh decodes
them with the model's own evaluation transform and embeds them with the current image tower, so
prototypes follow training like the prompt bank does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from torch import nn

from fashion_clip.data.raw_samples import raw_samples
from fashion_clip.data.samples import IMAGE_EXTENSIONS, decode_image
from fashion_clip.data.shard_spec import resolve_shards
from fashion_clip.errors import UserError
from fashion_clip.knowledge.concepts import Concept

log = logging.getLogger(__name__)


def read_example_images(shards: str | Sequence[str], keys: set[str]) -> dict[str, dict[str, Any]]:
    """The image member (still encoded) of every shard sample whose key is one of `keys`."""
    found = {}
    for sample in raw_samples(resolve_shards(shards, "train")):
        key = sample.get("__key__")
        ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
        if key in keys and ext is not None:
            found[key] = {ext: sample[ext], "__url__": sample.get("__url__", "?")}
    return found


def eval_transform(model: nn.Module) -> Callable[[Any], torch.Tensor]:
    """The model's own evaluation preprocessing, so prototypes see images as evaluation does."""
    return image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)


class ConceptPrototypes:
    """Per concept the indices of its readable example images; `embed` turns them into prototypes."""

    def __init__(self, concepts: Sequence[Concept], shards: str | Sequence[str]) -> None:
        wanted = {key for concept in concepts for key in concept.image_keys}
        if not wanted:
            raise UserError(
                "loss.prototype_weight > 0 but the knowledge base lists no concept images "
                "(concept_images.npz); rebuild it with --images-per-concept > 0 or set "
                "loss.prototype_weight=0"
            )
        samples = read_example_images(shards, wanted)
        readable, self.skipped = {}, len(wanted - samples.keys())
        for key, sample in samples.items():
            try:
                decode_image(sample)
            except Exception as e:  # a bad example image costs one example, not the run
                self.skipped += 1
                log.warning("concept example image %s in %s skipped: %s", key, sample["__url__"], e)
            else:
                readable[key] = sample
        if self.skipped:
            log.warning(
                "%d of %d concept example images missing or unreadable: skipped", self.skipped, len(wanted)
            )
        self.keys = sorted(readable)
        self.samples = [readable[key] for key in self.keys]
        row = {key: i for i, key in enumerate(self.keys)}
        self.members = [[row[k] for k in c.image_keys if k in row] for c in concepts]

    @property
    def available(self) -> torch.Tensor:
        """Which concepts have at least one readable example image, so a prototype."""
        return torch.tensor([bool(m) for m in self.members])

    def embed(self, model: nn.Module, device: torch.device, chunk: int) -> torch.Tensor:
        """(concepts, dim) unit-norm mean embeddings; zero rows for concepts without an example image."""
        transform = eval_transform(model)
        features = torch.cat(
            [
                model.encode_image(
                    torch.stack([transform(decode_image(s)) for s in self.samples[start : start + chunk]]).to(
                        device
                    ),
                    normalize=True,
                ).float()
                for start in range(0, len(self.samples), chunk)
            ]
        )
        rows = [features[m].mean(dim=0) if m else features.new_zeros(features.shape[1]) for m in self.members]
        return nn.functional.normalize(torch.stack(rows), dim=1)
