"""Rebuild the model an index was built with, so queries land in the same embedding space.

The index file is untrusted: its model config is checked and passed to the factory by field
(`models.stored_config`), never instantiated, and its checkpoint is read by the safe reader.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.models.factory import ClipBundle
from fashion_clip.models.identity import ModelIdentity, check_same_model

# model keys of index files written before the tower locks became one `model.lock` object
LEGACY_LOCK_KEYS = {
    "lock_image": "image",
    "lock_image_unlocked_groups": "image_unlocked_groups",
    "lock_image_freeze_bn_stats": "image_freeze_bn_stats",
    "lock_text": "text",
    "lock_text_unlocked_layers": "text_unlocked_layers",
    "lock_text_freeze_layer_norm": "text_freeze_layer_norm",
}
REMOVED_KEYS = ("channels_last",)
ONNX_KEY = "onnx"


def current_config(config: dict) -> dict:
    """An older index's model config in today's keys, so indexes built before the change still search."""
    lock = {new: config[old] for old, new in LEGACY_LOCK_KEYS.items() if old in config}
    dropped = (*LEGACY_LOCK_KEYS, *REMOVED_KEYS, ONNX_KEY)
    kept = {key: value for key, value in config.items() if key not in dropped}
    return kept | ({"lock": lock} if lock else {})


def query_config(
    index_model: ModelIdentity, name: str | None, pretrained: str | None, tokenizer: str | None
) -> dict:
    """The index's model config with each given value replacing the stored one."""
    given = {"name": name, "pretrained": pretrained, "tokenizer": tokenizer}
    return {**current_config(index_model.config), **{key: value for key, value in given.items() if value}}


def onnx_export_of(
    index_model: ModelIdentity, onnx: str | None, pretrained: str | None, ckpt_path: str | None
) -> str | None:
    """The export to query with: the one given, else the index's own unless other weights were given."""
    return onnx or (None if pretrained or ckpt_path else index_model.config.get(ONNX_KEY))


def build_query_model(
    index_model: ModelIdentity,
    name: str | None = None,
    pretrained: str | None = None,
    ckpt_path: str | None = None,
    tokenizer: str | None = None,
    device: torch.device | str = "cpu",
    onnx: str | None = None,
    trust_checkpoint: bool = False,
    source: str | Path = "index file",
) -> ClipBundle:
    """The index's model (each given argument replaces its stored value), checked to have the same weights.

    An ONNX export (`onnx`, or the one the index was built with) is run by onnxruntime on the CPU; an export
    holds its weights, so one given with `ckpt_path` is refused.
    `source` names the index in messages; `trust_checkpoint` opts in to a full unpickle of the checkpoint.
    """
    export = onnx_export_of(index_model, onnx, pretrained, ckpt_path)
    loaded = load_clip(
        query_config(index_model, name, pretrained, tokenizer),
        ckpt_path or (None if export else index_model.ckpt_path),
        source=source,
        onnx=export,
        trust_checkpoint=trust_checkpoint,
    )
    check_same_model(index_model, loaded.identity)
    loaded.bundle.model.eval().to(device)
    return loaded.bundle
