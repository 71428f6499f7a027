"""Rebuild the model an index was built with, so queries land in the same embedding space."""

from __future__ import annotations

import torch

from fashion_clip.models.factory import ClipBundle
from fashion_clip.models.loading import load_clip
from fashion_clip.retrieval.model_identity import ModelIdentity, check_same_model, identify

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


def current_config(config: dict) -> dict:
    """An older index's model config in today's keys, so indexes built before the change still search."""
    lock = {new: config[old] for old, new in LEGACY_LOCK_KEYS.items() if old in config}
    kept = {
        key: value for key, value in config.items() if key not in LEGACY_LOCK_KEYS and key not in REMOVED_KEYS
    }
    return kept | ({"lock": lock} if lock else {})


def query_config(
    index_model: ModelIdentity, name: str | None, pretrained: str | None, tokenizer: str | None
) -> dict:
    """The index's model config with each given value replacing the stored one."""
    given = {"name": name, "pretrained": pretrained, "tokenizer": tokenizer}
    return {**current_config(index_model.config), **{key: value for key, value in given.items() if value}}


def build_query_model(
    index_model: ModelIdentity,
    name: str | None = None,
    pretrained: str | None = None,
    ckpt_path: str | None = None,
    tokenizer: str | None = None,
    device: torch.device | str = "cpu",
) -> ClipBundle:
    """The index's model (each given argument replaces its stored value), checked to have the same weights."""
    config = query_config(index_model, name, pretrained, tokenizer)
    ckpt_path = ckpt_path or index_model.ckpt_path
    bundle = load_clip(config, ckpt_path)
    check_same_model(index_model, identify(bundle.model, config, ckpt_path))
    bundle.model.eval().to(device)
    return bundle
