"""Build the configured model and load an optional checkpoint into it, as evaluate, index and search do."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from fashion_clip.models.checkpoint import load_weights
from fashion_clip.models.factory import ClipBundle


def load_clip(
    model_cfg: Mapping[str, Any], ckpt_path: str | Path | None, trust_checkpoint: bool = False
) -> ClipBundle:
    """The `model` config's bundle with the checkpoint's weights, when one is given.

    A checkpoint replaces every weight, so the base weights are not downloaded for it. `model_cfg` is the
    user's own config (it is instantiated); `trust_checkpoint` opts in to a full unpickle of `ckpt_path`.
    """
    bundle = instantiate(model_cfg, **({"pretrained": None} if ckpt_path else {}))
    if ckpt_path:
        load_weights(bundle.model, ckpt_path, model_cfg["name"], trust_checkpoint)
    return bundle
