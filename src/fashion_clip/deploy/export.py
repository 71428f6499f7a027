"""The export command's work: a checkpoint as a plain open_clip state dict any open_clip install loads, or
as an ONNX directory (onnx_export.py); the model is rebuilt exactly as training built it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import open_clip
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.deploy.onnx_export import OVERWRITE_SWITCH, export_onnx, refuse_existing_export
from fashion_clip.errors import ConfigError
from fashion_clip.models.factory import MODEL_CONFIG_DIR
from fashion_clip.models.lora import LoraSettings, merge_lora
from fashion_clip.preflight import preflight
from fashion_clip.utils.files import atomic_output, refuse_existing
from fashion_clip.utils.launch import from_launch_dir, launch_reference

log = logging.getLogger(__name__)

SIGLIP_BIAS = "logit_bias"
FORMATS = ("open_clip", "onnx")
# what the model loader names in a message about the plain model settings below
SETTINGS_SOURCE = "the export's model settings"


def plain_state_dict(model: open_clip.CLIP, architecture_has_bias: bool) -> dict[str, torch.Tensor]:
    """The weights plain open_clip accepts: a SigLIP-trained bias on a CLIP architecture has no slot there."""
    state = model.state_dict()
    if SIGLIP_BIAS in state and not architecture_has_bias:
        bias = state.pop(SIGLIP_BIAS)
        log.info(
            "dropped logit_bias=%.4f (learned by the SigLIP loss; this architecture has none). "
            "It only shifts pair scores, so embeddings and rankings are unchanged.",
            bias.item(),
        )
    return state


def load_hint(name: str, out: Path, force_image_size: int | None) -> str:
    """The exact open_clip calls that load the exported file, including what a plain install lacks."""
    config = MODEL_CONFIG_DIR / f"{name}.json"
    register = f"open_clip.add_model_config('{config}'); " if config.is_file() else ""
    size = f", force_image_size={force_image_size}" if force_image_size else ""
    return f"{register}open_clip.create_model_and_transforms('{name}', pretrained='{out}'{size})"


def plain_value(value: Any) -> Any:
    """A settings value as a stored config holds it: a list for any sequence but a string."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value


def export_config(
    name: str, force_image_size: int | None, lora: LoraSettings | None, tokenizer: str | None = None
) -> dict[str, Any]:
    """The model an export rebuilds, as plain settings: the architecture, its image size, the LoRA adapters
    it was trained with and its tokenizer; the checkpoint replaces every weight, and locks change none."""
    config = {"name": name, "force_image_size": force_image_size, "tokenizer": tokenizer}
    if lora is None:
        return config
    return config | {"lora": {field.name: plain_value(getattr(lora, field.name)) for field in fields(lora)}}


def export_open_clip(
    name: str,
    ckpt_path: str | Path,
    out: str | Path,
    force_image_size: int | None = None,
    overwrite: bool = False,
    lora: LoraSettings | None = None,
    trust_checkpoint: bool = False,
) -> Path:
    """Write the checkpoint's open_clip weights for architecture `name` to `out`; never downloads anything.

    A checkpoint trained with LoRA (`lora` as in training) is loaded into the adapted model, then the
    adapters are merged so the file is a plain open_clip state dict.
    """
    out = Path(out).expanduser()
    refuse_existing(out, overwrite, OVERWRITE_SWITCH)
    config = export_config(name, force_image_size, lora)
    model = load_clip(
        config, ckpt_path, source=SETTINGS_SOURCE, trust_checkpoint=trust_checkpoint, with_tokenizer=False
    ).bundle.model
    # asked of the architecture: loading a SigLIP-trained checkpoint gives any model a logit_bias
    architecture_has_bias = open_clip.get_model_config(name).get("init_logit_bias") is not None
    state = plain_state_dict(merge_lora(model), architecture_has_bias)
    with atomic_output(out) as tmp:
        torch.save(state, tmp)
    log.info("wrote %s; load it with: %s", out, load_hint(name, out.resolve(), force_image_size))
    return out


def export_onnx_directory(
    name: str,
    ckpt_path: str | Path,
    out: str | Path,
    tokenizer: str | None = None,
    force_image_size: int | None = None,
    overwrite: bool = False,
    lora: LoraSettings | None = None,
    trust_checkpoint: bool = False,
) -> Path:
    """Write both towers of the checkpoint as ONNX, with `preprocess.json` and the tokenizer, into `out`.

    The fingerprint is taken before LoRA merges, from the weights as training and indexing load them.
    """
    out = Path(out).expanduser()
    refuse_existing_export(out, overwrite)
    config = export_config(name, force_image_size, lora, tokenizer)
    loaded = load_clip(config, ckpt_path, source=SETTINGS_SOURCE, trust_checkpoint=trust_checkpoint)
    fingerprint = loaded.identity.fingerprint  # before LoRA merges, as the loaded weights are indexed
    source = {"ckpt_path": loaded.ckpt_path, "lora_merged": lora is not None and lora.enabled}
    export_onnx(
        merge_lora(loaded.bundle.model), loaded.bundle.tokenizer, name, fingerprint, out, overwrite, source
    )
    log.info(
        "wrote %s (image_encoder.onnx, text_encoder.onnx, preprocess.json, tokenizer.json, model.json)", out
    )
    return out


def required(cfg: DictConfig, key: str, example: str) -> str:
    """A mandatory CLI value, or an error showing how to pass it (instead of OmegaConf's traceback)."""
    value = cfg.get(key)
    if not value:
        raise ConfigError(f"{key}= is required, e.g. `python -m fashion_clip.export {example}`")
    return str(value)


def export_from_config(cfg: DictConfig) -> None:
    """`model=` picks the architecture exactly as in training; paths are read from where the user launched."""
    preflight(cfg, "export")
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format!r} is not one of {', '.join(FORMATS)}")
    root = cfg.paths.root_dir
    example = "model=vitb32 ckpt_path=outputs/.../checkpoints/last.ckpt out=model.pt"
    ckpt_path = from_launch_dir(root, required(cfg, "ckpt_path", example))
    out = from_launch_dir(root, required(cfg, "out", example))
    lora = instantiate(cfg.model.lora) if cfg.model.get("lora") else None
    options = {
        "force_image_size": cfg.model.force_image_size,
        "overwrite": cfg.overwrite,
        "lora": lora,
        "trust_checkpoint": cfg.trust_checkpoint,
    }
    if cfg.format == "onnx":
        tokenizer = launch_reference(root, cfg.model.get("tokenizer"))
        export_onnx_directory(cfg.model.name, ckpt_path, out, tokenizer, **options)
    else:
        export_open_clip(cfg.model.name, ckpt_path, out, **options)
