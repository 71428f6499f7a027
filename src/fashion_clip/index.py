"""Index entry point: `python -m fashion_clip.index model=tiny source=data/demo/test out=index.pt`.

Add `ckpt_path=...` to index with fine-tuned weights, or `onnx=DIR` to embed with an ONNX export
(onnxruntime, `python -m fashion_clip.export format=onnx`); the index records which weights built it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fashion_clip.config import hydra_entry
from fashion_clip.data.shard_spec import REMOTE_PREFIXES
from fashion_clip.deploy.onnx_bundle import onnx_bundle, onnx_identity
from fashion_clip.errors import ConfigError
from fashion_clip.models.factory import ClipBundle
from fashion_clip.models.loading import load_clip
from fashion_clip.models.stored_config import without_targets
from fashion_clip.preflight import preflight
from fashion_clip.retrieval.index_file import refuse_existing, save_index
from fashion_clip.retrieval.indexing import build_index, open_catalogue
from fashion_clip.retrieval.model_identity import ModelIdentity, identify
from fashion_clip.utils.devices import resolve_device
from fashion_clip.utils.launch_dir import from_launch_dir

log = logging.getLogger(__name__)


def launch_location(root: str, value: str) -> str:
    """A local path taken from where the user launched; remote URLs stay as given."""
    return value if value.startswith(REMOTE_PREFIXES) else str(from_launch_dir(root, value))


def stored_reference(root: str, value: str | None) -> str | None:
    """A local file or directory as an absolute path, so search works from anywhere; tags as given."""
    if value is None:
        return None
    local = Path(launch_location(root, value))
    return str(local.resolve()) if local.exists() else value


def stored_model_config(model: DictConfig, root: str) -> dict[str, Any]:
    """The resolved model config as search will rebuild it, local weight and tokenizer paths absolute."""
    config = without_targets(OmegaConf.to_container(model, resolve=True))
    for key in ("pretrained", "tokenizer"):  # `tokenizer` is absent from some presets
        if key in config:
            config[key] = stored_reference(root, config[key])
    return config


def index_model(cfg: DictConfig, root: str) -> tuple[ClipBundle, ModelIdentity]:
    """The model that embeds the catalogue: the ONNX export at `onnx`, else `model` with `ckpt_path`."""
    ckpt_path = stored_reference(root, cfg.ckpt_path)
    if cfg.get("onnx"):
        if ckpt_path:
            raise ConfigError("give onnx= or ckpt_path=, not both: an ONNX export already holds its weights")
        bundle = onnx_bundle(from_launch_dir(root, cfg.onnx))
        return bundle, onnx_identity(bundle)
    bundle = load_clip(cfg.model, ckpt_path, cfg.trust_checkpoint)
    return bundle, identify(bundle.model, stored_model_config(cfg.model, root), ckpt_path)


def index_catalogue(cfg: DictConfig) -> Path:
    """Embed the catalogue at `source` with the configured model and write the index to `out`."""
    preflight(cfg, "index")
    root = cfg.paths.root_dir
    out = Path(launch_location(root, str(cfg.out)))
    refuse_existing(out, cfg.overwrite)
    bundle, identity = index_model(cfg, root)
    source = launch_location(root, str(cfg.source))
    index = build_index(
        bundle,
        open_catalogue(source, bundle.val_transform),
        identity,
        source,
        batch_size=cfg.evaluation.batch_size,
        num_workers=cfg.evaluation.num_workers,
        device=resolve_device(cfg.evaluation.device),
    )
    save_index(index, out, cfg.overwrite)
    log.info(
        "indexed %d images of %d products (%d unreadable skipped) from %s with %s into %s (%.1f MB)",
        len(index),
        index.num_products,
        index.skipped,
        source,
        identity.describe(),
        out,
        out.stat().st_size / 1e6,
    )
    return out


main = hydra_entry("index", index_catalogue)

if __name__ == "__main__":
    main()
