"""Index entry point: `python -m fashion_clip.index model=tiny source=data/demo/test out=index.pt`.

Add `ckpt_path=...` to index with fine-tuned weights, or `onnx=DIR` to embed with an ONNX export
(onnxruntime, `python -m fashion_clip.export format=onnx`); the index records which weights built it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from fashion_clip.config import hydra_entry
from fashion_clip.data.shard_spec import REMOTE_PREFIXES
from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.preflight import preflight
from fashion_clip.retrieval.index_file import build_index, open_catalogue, refuse_existing, save_index
from fashion_clip.utils.launch import from_launch_dir, resolve_device

log = logging.getLogger(__name__)


def launch_location(root: str, value: str) -> str:
    """A local path taken from where the user launched; remote URLs stay as given."""
    return value if value.startswith(REMOTE_PREFIXES) else str(from_launch_dir(root, value))


def index_catalogue(cfg: DictConfig) -> Path:
    """Embed the catalogue at `source` with the configured model and write the index to `out`."""
    preflight(cfg, "index")
    root = cfg.paths.root_dir
    out = Path(launch_location(root, str(cfg.out)))
    refuse_existing(out, cfg.overwrite)
    loaded = load_clip(
        cfg.model, cfg.ckpt_path, root=root, onnx=cfg.get("onnx"), trust_checkpoint=cfg.trust_checkpoint
    )
    bundle, identity = loaded.bundle, loaded.identity
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
