"""Rebuild the model an index was built with, so queries land in the same embedding space."""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from fashion_clip.models.checkpoint import load_weights
from fashion_clip.models.factory import ClipBundle
from fashion_clip.retrieval.model_identity import ModelIdentity, check_same_model, identify


def query_config(
    index_model: ModelIdentity, name: str | None, pretrained: str | None, tokenizer: str | None
) -> dict:
    """The index's model config with each given value replacing the stored one."""
    given = {"name": name, "pretrained": pretrained, "tokenizer": tokenizer}
    return {**index_model.config, **{key: value for key, value in given.items() if value}}


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
    # a checkpoint replaces every weight, so the base weights need not be downloaded
    bundle = instantiate(config, **({"pretrained": None} if ckpt_path else {}))
    if ckpt_path:
        load_weights(bundle.model, ckpt_path, config["name"])
    check_same_model(index_model, identify(bundle.model, config, ckpt_path))
    bundle.model.eval().to(device)
    return bundle
