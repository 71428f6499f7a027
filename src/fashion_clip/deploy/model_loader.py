"""The one way every command loads a model: the user's `model` config, a model config stored in an index,
or an ONNX export, with a checkpoint's weights when one is given, and the identity an index records.

A stored config is untrusted: it is checked field by field and handed to the factory, never instantiated
(`models.stored_config`). Every checkpoint goes through the safe reader (`models.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

from fashion_clip.deploy.onnx_bundle import OnnxTowers, onnx_bundle, onnx_identity
from fashion_clip.errors import ConfigError
from fashion_clip.models.checkpoint import load_weights
from fashion_clip.models.factory import ClipBundle
from fashion_clip.models.identity import ModelIdentity, identify
from fashion_clip.models.stored_config import clip_from_stored, without_targets
from fashion_clip.utils.launch import from_launch_dir, launch_reference

# model settings that name a local file or directory, or else a tag or hub name
LOCAL_REFERENCES = ("pretrained", "tokenizer")


@dataclass(frozen=True)
class LoadedModel:
    """A model to embed with, the plain config that rebuilds it and the checkpoint it holds (absolute)."""

    bundle: ClipBundle
    config: dict[str, Any]
    ckpt_path: str | None = None

    @cached_property
    def identity(self) -> ModelIdentity:
        """What an index records of these weights; hashed on first use (under a second for ViT-B/16), so
        commands that never index do not pay for it."""
        if isinstance(self.bundle.model, OnnxTowers):
            return onnx_identity(self.bundle)
        return identify(self.bundle.model, self.config, self.ckpt_path)


def user_model_config(config: Mapping[str, Any], root: str | Path) -> dict[str, Any]:
    """The user's `model` config as an index stores it: plain values, no `_target_`, and local weight and
    tokenizer paths absolute from where the user launched."""
    values = OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else config
    plain = without_targets(values)
    return plain | {key: launch_reference(root, plain[key]) for key in LOCAL_REFERENCES if key in plain}


def load_clip(
    config: Mapping[str, Any] | None = None,
    ckpt_path: str | Path | None = None,
    *,
    root: str | Path = ".",
    source: str | Path | None = None,
    onnx: str | Path | None = None,
    trust_checkpoint: bool = False,
    with_tokenizer: bool = True,
) -> LoadedModel:
    """The model `config` describes with the checkpoint's weights (the base weights are then not loaded: the
    checkpoint replaces every one), or the ONNX export at `onnx`.

    Without `source`, `config` is the user's own Hydra `model` config and is instantiated; with it, `config`
    is plain values from `source` (an index file, or a caller's own settings; named in messages), checked
    field by field and never instantiated. `root` is where the user launched: relative paths (`ckpt_path`,
    `onnx`, a user config's `pretrained` and `tokenizer`) are read from there. `trust_checkpoint` is the
    user's opt-in to a full unpickle; `with_tokenizer=False` builds the weights only (an open_clip export).
    """
    if onnx:
        if ckpt_path:
            raise ConfigError(
                "give onnx= or ckpt_path=, not both (search: --onnx or --ckpt): an ONNX export already holds "
                "its weights"
            )
        bundle = onnx_bundle(from_launch_dir(root, onnx))
        return LoadedModel(bundle, onnx_identity(bundle).config)
    ckpt = str(from_launch_dir(root, ckpt_path).resolve()) if ckpt_path else None
    overrides = ({"pretrained": None} if ckpt else {}) | ({} if with_tokenizer else {"with_tokenizer": False})
    if source is None:
        plain = user_model_config(config, root)
        located = {key: plain[key] for key in LOCAL_REFERENCES if key in plain}
        bundle = instantiate(config, **located | overrides)
    else:
        plain = dict(config)
        bundle = clip_from_stored(plain, source, **overrides)
    if ckpt:
        load_weights(bundle.model, ckpt, plain["name"], trust_checkpoint)
    return LoadedModel(bundle, plain, ckpt)
