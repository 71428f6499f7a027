"""Which weights embedded an index, so a query is never scored against another model's vectors.

The fingerprint is a SHA-256 over every state-dict tensor (name, dtype, shape, raw bytes) in sorted key
order. It is exact (any changed weight changes it), independent of the device and autocast precision the
embeddings were computed with (a probe embedding would differ between fp16 CUDA and fp32 CPU and need a
tolerance), and cheap: one pass over the weights, about 25 ms for FashionCLIP-Tiny (32 MB) and well
under a second for ViT-B/16 (600 MB).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import open_clip
import torch
from torch import nn

from fashion_clip.errors import ConfigError

FINGERPRINT_SHOWN = 12


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 hex digest of the model's state dict, the same on any device."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    """How to rebuild the model that embedded an index, and the fingerprint its weights must match.

    `config` is the resolved `model` config's plain values (no Hydra `_target_`; LoRA and image-size
    switches included), so search rebuilds the same architecture before loading `ckpt_path`; an index
    built from an ONNX export has the export directory under `onnx` instead.
    """

    config: dict[str, Any]
    ckpt_path: str | None
    embed_dim: int
    fingerprint: str

    @property
    def name(self) -> str:
        """The open_clip model name."""
        return self.config["name"]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the index file, which must load with `torch.load(weights_only=True)`."""
        return asdict(self)

    def describe(self) -> str:
        """One line naming the weights, for error messages and the search header."""
        pretrained = self.config.get("pretrained")
        weights = f"ckpt={self.ckpt_path}" if self.ckpt_path else f"pretrained={pretrained or 'random init'}"
        if self.config.get("onnx"):
            weights = f"onnx={self.config['onnx']}"
        return f"{self.name} ({weights}, weights sha256 {self.fingerprint[:FINGERPRINT_SHOWN]})"


def clip_config(name: str, **arguments: Any) -> dict[str, Any]:
    """The model config of a bundle made with `create_clip(name, **arguments)` outside Hydra."""
    return {"name": name, **arguments}


def identify(model: nn.Module, config: dict[str, Any], ckpt_path: str | None) -> ModelIdentity:
    """The identity of a model built from `config` (and loaded from `ckpt_path`, if given)."""
    embed_dim = int(open_clip.get_model_config(config["name"])["embed_dim"])
    return ModelIdentity(config, ckpt_path, embed_dim, weights_fingerprint(model))


def check_same_model(index_model: ModelIdentity, query_model: ModelIdentity) -> None:
    """Refuse to compare embeddings from different weights: the scores would be meaningless."""
    if index_model.fingerprint != query_model.fingerprint:
        hint = (
            " (a random-init model differs on every build: save its weights and index with ckpt_path=...)"
            if not (index_model.ckpt_path or index_model.config.get("pretrained"))
            else ""
        )
        raise ConfigError(
            f"index built with {index_model.describe()}, query model is {query_model.describe()}: "
            f"rebuild the index or pass the same model (--model/--pretrained/--ckpt){hint}"
        )
