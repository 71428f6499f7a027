"""Export both towers of a trained model to ONNX, with the preprocessing and tokenizer files that feed them.

torch.onnx's dynamo exporter (the default since torch 2.9) traces each tower with a dynamic batch axis;
each file outputs unit-norm float32 embeddings, so a service only takes dot products. The onnx checker
validates both files before the directory appears under its final name.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import open_clip
import torch
from open_clip.transform import PreprocessCfg
from torch import nn

from fashion_clip.deploy.export_files import (
    FINGERPRINT_KEY,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    PREPROCESS_FILE,
    TOWER_KEY,
    TOWERS,
    encoder_file,
    is_export,
    write_json,
)
from fashion_clip.deploy.tokenizer_export import TOKENIZER_FILE, export_tokenizer
from fashion_clip.errors import UserError
from fashion_clip.utils.files import OutputExistsError, atomic_directory, holds_something, refuse_replacing

log = logging.getLogger(__name__)

INPUT_NAMES = {"image": "pixels", "text": "tokens"}
EXAMPLE_BATCH = 2
# the exporter's graph passes log one INFO line per folded constant or merged initializer (100+ per tower)
CHATTY_LOGGERS = ("onnx_ir", "onnxscript")
OP_PATTERNS = (re.compile(r"OpOverload\(op='([^']+)'"), re.compile(r"target=torch\.ops\.([\w.]+)"))
EXPORT_FILES = (*map(encoder_file, TOWERS), PREPROCESS_FILE, TOKENIZER_FILE, MANIFEST_FILE)
OVERWRITE_SWITCH = "overwrite=true"


class EncoderTower(nn.Module):
    """One tower of the dual encoder as its own module: input in, unit-norm embedding out."""

    def __init__(self, model: open_clip.CLIP, tower: str):
        super().__init__()
        self.model = model
        self.tower = tower

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """`encode_image(pixels)` or `encode_text(tokens)`, normalised."""
        encode = self.model.encode_image if self.tower == "image" else self.model.encode_text
        return encode(inputs, normalize=True)


class ExportError(UserError, RuntimeError):
    """A tower could not be traced or converted to ONNX; the message names the model and the operator."""


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Keep the exporter's per-pass INFO lines and tracing warnings out of the run log."""
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    try:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def failing_operator(error: BaseException) -> str | None:
    """The torch operator the exporter stopped at, read from its error chain (None when it names none)."""
    while error is not None:
        for pattern in OP_PATTERNS:
            match = pattern.search(str(error))
            if match:
                return match.group(1)
        error = error.__cause__ or error.__context__
    return None


def image_size(cfg: PreprocessCfg) -> tuple[int, int]:
    """(height, width) of the encoder's input; open_clip allows one int for square inputs."""
    return tuple(cfg.size) if isinstance(cfg.size, (tuple, list)) else (cfg.size, cfg.size)


def preprocess_settings(cfg: PreprocessCfg) -> dict[str, Any]:
    """The settings of open_clip's eval transform that the PIL + numpy reference reads."""
    return {
        "size": list(image_size(cfg)),
        "mode": cfg.mode,
        "resize_mode": cfg.resize_mode,
        "interpolation": cfg.interpolation,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "fill_color": cfg.fill_color,
    }


def preprocess_spec(model: open_clip.CLIP, fingerprint: str) -> dict[str, Any]:
    """`preprocess.json`: the eval transform open_clip builds from the model's `preprocess_cfg`."""
    return preprocess_settings(PreprocessCfg(**model.visual.preprocess_cfg)) | {
        "layout": "NCHW float32, RGB scaled to [0, 1] then normalised with mean and std",
        "fingerprint": fingerprint,
    }


def example_input(model: open_clip.CLIP, tower: str, tokenizer: Any) -> torch.Tensor:
    """A batch the exporter traces with (values do not matter, shapes and dtypes do)."""
    if tower == "image":
        height, width = image_size(PreprocessCfg(**model.visual.preprocess_cfg))
        return torch.zeros(EXAMPLE_BATCH, 3, height, width)
    return tokenizer(["a black leather ankle boot"] * EXAMPLE_BATCH)


def export_tower(
    model: open_clip.CLIP, name: str, tower: str, example: torch.Tensor, path: Path, fingerprint: str
) -> None:
    """Write one tower's ONNX file, stamped with the weights fingerprint, and check it."""
    input_name = INPUT_NAMES[tower]
    try:
        with quiet_exporter():
            program = torch.onnx.export(
                EncoderTower(model, tower).eval(),
                (example,),
                input_names=[input_name],
                output_names=[f"{tower}_embedding"],
                dynamic_shapes={"inputs": {0: torch.export.Dim("batch")}},
                dynamo=True,
                verbose=False,
            )
    except Exception as e:  # torch.export and the ONNX translation raise many types
        operator = failing_operator(e)
        what = f"operator {operator} has no ONNX translation" if operator else f"{type(e).__name__}: {e}"
        raise ExportError(
            f"could not export the {tower} tower of {name} to ONNX: {what}. Export it with format=open_clip "
            f"instead, or replace that operator in the model"
        ) from e
    program.model.metadata_props[FINGERPRINT_KEY] = fingerprint
    program.model.metadata_props[TOWER_KEY] = tower
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def refuse_existing_export(out: Path, overwrite: bool) -> None:
    """An `out` holding something is replaced only with overwrite=true, only when it is an earlier export,
    and never when it also holds files the export did not write: replacing removes the old directory whole,
    so a user's file there is refused even with overwrite=true rather than deleted."""
    if overwrite and holds_something(out) and not (out.is_dir() and is_export(out)):
        raise OutputExistsError(
            f"out='{out}' exists and is not an ONNX export written by fashion-clip: choose another out="
        )
    refuse_replacing(out, overwrite, OVERWRITE_SWITCH, EXPORT_FILES)


def export_onnx(
    model: open_clip.CLIP,
    tokenizer: Any,
    name: str,
    fingerprint: str,
    out: Path,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
) -> Path:
    """Write the export directory `out`: both towers, `preprocess.json`, the tokenizer and `model.json`.

    `fingerprint` identifies the weights as loaded for training and indexing (before any LoRA merge), so an
    index built with the torch model is searched with this export and vice versa.
    """
    refuse_existing_export(out, overwrite)
    model = model.float().eval()
    with atomic_directory(out) as tmp:
        for tower in TOWERS:
            export_tower(
                model,
                name,
                tower,
                example_input(model, tower, tokenizer),
                tmp / encoder_file(tower),
                fingerprint,
            )
        write_json(tmp / PREPROCESS_FILE, preprocess_spec(model, fingerprint))
        write_json(tmp / MANIFEST_FILE, manifest(model, tokenizer, name, fingerprint, tmp, source or {}))
    return out


def manifest(
    model: open_clip.CLIP,
    tokenizer: Any,
    name: str,
    fingerprint: str,
    directory: Path,
    source: dict[str, Any],
) -> dict[str, Any]:
    """`model.json`: what a service needs to load the files and what they were exported from."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model": name,
        "embed_dim": int(open_clip.get_model_config(name)["embed_dim"]),
        "fingerprint": fingerprint,
        "outputs": "unit-norm float32 embeddings: score = image_embedding . text_embedding",
        "image_encoder": {"file": encoder_file("image"), "input": INPUT_NAMES["image"]},
        "text_encoder": {"file": encoder_file("text"), "input": INPUT_NAMES["text"]},
        "preprocess": PREPROCESS_FILE,
        "tokenizer": export_tokenizer(tokenizer, directory),
        "logit_scale": model.logit_scale.exp().item(),
        "logit_bias": model.logit_bias.item() if model.logit_bias is not None else None,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "source": source,
    }
