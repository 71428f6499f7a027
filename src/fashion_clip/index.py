"""Index entry point: `python -m fashion_clip.index model=tiny source=data/demo/test out=index.pt`.

Add `ckpt_path=...` to index with fine-tuned weights; the index records which weights it was built with.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fashion_clip.config import CONFIG_DIR
from fashion_clip.data.shard_spec import REMOTE_PREFIXES
from fashion_clip.errors import exit_on_user_error, hydra_cli
from fashion_clip.models.checkpoint import load_weights
from fashion_clip.preflight import preflight
from fashion_clip.retrieval.index_file import refuse_existing, save_index
from fashion_clip.retrieval.indexing import build_index, open_catalogue
from fashion_clip.retrieval.model_identity import identify
from fashion_clip.utils.devices import resolve_device

log = logging.getLogger(__name__)


def from_launch_dir(root: str, value: str) -> str:
    """A relative path taken from where the user launched; remote URLs and absolute paths stay as given."""
    if value.startswith(REMOTE_PREFIXES):
        return value
    return str(Path(root) / Path(value).expanduser())


def stored_reference(root: str, value: str | None) -> str | None:
    """A local file or directory as an absolute path, so search works from anywhere; tags as given."""
    if value is None:
        return None
    local = Path(from_launch_dir(root, value))
    return str(local.resolve()) if local.exists() else value


def stored_model_config(model: DictConfig, root: str) -> dict[str, Any]:
    """The resolved model config as search will rebuild it, local weight and tokenizer paths absolute."""
    config = OmegaConf.to_container(model, resolve=True)
    for key in ("pretrained", "tokenizer"):  # `tokenizer` is absent from some presets
        if key in config:
            config[key] = stored_reference(root, config[key])
    return config


def index_catalogue(cfg: DictConfig) -> Path:
    """Embed the catalogue at `source` with the configured model and write the index to `out`."""
    preflight(cfg, "index")
    root = cfg.paths.root_dir
    out = Path(from_launch_dir(root, str(cfg.out)))
    refuse_existing(out, cfg.overwrite)
    ckpt_path = stored_reference(root, cfg.ckpt_path)
    # a checkpoint replaces every weight, so the base weights need not be downloaded
    bundle = instantiate(cfg.model, **({"pretrained": None} if ckpt_path else {}))
    if ckpt_path:
        load_weights(bundle.model, ckpt_path, cfg.model.name)
    identity = identify(bundle.model, stored_model_config(cfg.model, root), ckpt_path)
    source = from_launch_dir(root, str(cfg.source))
    index = build_index(
        bundle,
        open_catalogue(source, bundle.val_transform),
        identity,
        source,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        device=resolve_device(cfg.device),
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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="index")
@exit_on_user_error
def hydra_main(cfg: DictConfig) -> None:
    """Console entry point (`fashion-clip-index`)."""
    index_catalogue(cfg)


main = hydra_cli(hydra_main)

if __name__ == "__main__":
    main()
