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


def checkpoint_state_dict(path: str | Path, lightning_required: bool = False) -> dict[str, torch.Tensor]:
    """The open_clip model's weights from either kind of file, with ClipModule's `model.` prefix removed.

    `lightning_required`: only a checkpoint written by a training run will do (resuming needs its
    optimizer, schedule and data position, which a plain state dict lacks).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingInputError(f"checkpoint '{path}' does not exist (ckpt_path)")
    try:
        state, lightning = _read_state_dict(path)
    except Exception as e:  # torch.load and safetensors raise many types for a damaged or foreign file
        raise UserError(
            f"checkpoint '{path}' could not be read ({type(e).__name__}: {e}); it may be truncated or not a "
            f"PyTorch/safetensors checkpoint. Point ckpt_path at a complete .ckpt, .pt or .safetensors file."
        ) from e
    if lightning_required and not lightning:
        raise ConfigError(
            f"ckpt_path '{path}' is a plain state dict, not a Lightning checkpoint: training resumes only "
            "from a training run's .ckpt (checkpoints/last.ckpt); to start from these weights instead, "
            f"set model.pretrained={path} and ckpt_path=null"
        )
    return state


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """Unwrap a Lightning checkpoint ourselves (memory-mapped: a resume file can be several GB, most of it
    optimizer state); open_clip's reader handles every plain format. Also says which kind it was."""
    if path.suffix == ".safetensors":
        return open_clip.factory.load_state_dict(str(path)), False
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError:  # files in torch's legacy (non-zip) format cannot be memory-mapped
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if is_lightning_checkpoint(checkpoint):
        prefixed = checkpoint["state_dict"].items()
        return {k[len(MODULE_PREFIX) :]: v for k, v in prefixed if k.startswith(MODULE_PREFIX)}, True
    return open_clip.factory.load_state_dict(str(path)), False


def mismatch(model: nn.Module, state: dict[str, torch.Tensor], shapes_only: bool = False) -> list[str]:
    """What differs between the model's and the file's parameters, a few examples per kind.

    `shapes_only` ignores names on one side only (LoRA adapters, a SigLIP bias): what tells another
    architecture apart is a shared name with another shape, or no shared name at all.
    """
    own = model.state_dict()
    missing = [] if shapes_only else [k for k in own if k not in state]
    unexpected = [] if shapes_only else [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} in the file vs {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if not own.keys() & state.keys():
        problems.append(f"none of the model's {len(own)} parameter names is in the file")
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
    problems = mismatch(model, state)
    if problems:
        raise ConfigError(
            f"checkpoint '{path}' does not fit model.name='{model_name}': {', '.join(problems)}. "
            f"Pick the model preset the checkpoint was trained with (model=...)."
        )
    model.load_state_dict(state)
