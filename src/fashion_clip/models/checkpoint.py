"""Read weights from a Lightning checkpoint or a plain open_clip state dict; mismatches are named."""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
from torch import nn

from fashion_clip.errors import ConfigError, MissingInputError, UserError

MODULE_PREFIX = "model."
EXAMPLES = 3


def is_lightning_checkpoint(checkpoint: object) -> bool:
    """Lightning files carry their version and a prefixed `state_dict`; plain state dicts carry neither."""
    return (
        isinstance(checkpoint, dict)
        and "pytorch-lightning_version" in checkpoint
        and "state_dict" in checkpoint
    )


def checkpoint_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The open_clip model's weights from either kind of file, with ClipModule's `model.` prefix removed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingInputError(f"checkpoint '{path}' does not exist (ckpt_path)")
    try:
        return _read_state_dict(path)
    except Exception as e:  # torch.load and safetensors raise many types for a damaged or foreign file
        raise UserError(
            f"checkpoint '{path}' could not be read ({type(e).__name__}: {e}); it may be truncated or not a "
            f"PyTorch/safetensors checkpoint. Point ckpt_path at a complete .ckpt, .pt or .safetensors file."
        ) from e


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Unwrap a Lightning checkpoint ourselves; open_clip's reader handles every plain format."""
    if path.suffix == ".safetensors":
        return open_clip.factory.load_state_dict(str(path))
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if is_lightning_checkpoint(checkpoint):
        return {
            k[len(MODULE_PREFIX) :]: v
            for k, v in checkpoint["state_dict"].items()
            if k.startswith(MODULE_PREFIX)
        }
    return open_clip.factory.load_state_dict(str(path))


def _mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """What differs between the model's and the file's parameters, a few examples per kind."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} in the file vs {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)):
        if names:
            problems.append(f"{len(names)} {label} (e.g. {'; '.join(names[:EXAMPLES])})")
    return problems


def load_weights(model: nn.Module, path: str | Path, model_name: str) -> None:
    """Load a checkpoint into `model` strictly; a file from another architecture fails before any work."""
    state = checkpoint_state_dict(path)
    if "logit_bias" in state and getattr(model, "logit_bias", None) is None:
        # trained with the SigLIP loss on a CLIP architecture: keep the learned bias it brings
        model.logit_bias = nn.Parameter(torch.zeros_like(state["logit_bias"]))
    problems = _mismatch(model, state)
    if problems:
        raise ConfigError(
            f"checkpoint '{path}' does not fit model.name='{model_name}': {', '.join(problems)}. "
            f"Pick the model preset the checkpoint was trained with (model=...)."
        )
    model.load_state_dict(state)
