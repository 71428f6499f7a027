"""The one reader of checkpoint files: weights from a Lightning checkpoint or a plain open_clip state dict.

A checkpoint is untrusted input (a colleague's file, a hub download): it is unpickled with
`torch.load(weights_only=True)`, which builds tensors and plain containers only and refuses any other
global. The types a Lightning checkpoint may carry beyond those (OmegaConf's containers, when a Hydra
config is saved as hyperparameters) are allow-listed by name; a file needing anything else is refused unless
the user opts in (`trust_checkpoint=true`), which unpickles it fully and so runs whatever code it names.
"""

from __future__ import annotations

import collections
import logging
import pickle
import typing
from pathlib import Path

import open_clip
import torch
from omegaconf import DictConfig, ListConfig
from omegaconf.base import ContainerMetadata, Metadata
from omegaconf.nodes import AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode
from torch import nn
from torch.serialization import add_safe_globals, get_unsafe_globals_in_checkpoint

from fashion_clip.errors import ConfigError, MissingInputError, UserError

log = logging.getLogger(__name__)

MODULE_PREFIX = "model."
EXAMPLES = 3
# what OmegaConf puts in a checkpoint (a Hydra config saved as Lightning hyperparameters) beyond tensors and
# plain containers; the builtins appear as its nodes' declared types
CHECKPOINT_GLOBALS = (
    DictConfig,
    ListConfig,
    ContainerMetadata,
    Metadata,
    AnyNode,
    BooleanNode,
    FloatNode,
    IntegerNode,
    StringNode,
    typing.Any,
    collections.defaultdict,
    dict,
    list,
    int,
    float,
    str,
    bool,
)
add_safe_globals(list(CHECKPOINT_GLOBALS))
TRUST_HINT = (
    "Only if you trust whoever made this file, load it anyway with trust_checkpoint=true "
    "(search: --trust-checkpoint): that unpickles it fully, and a crafted file then runs any code it names "
    "on this machine. Better: ask for the weights as .safetensors or a plain state dict."
)


class UntrustedCheckpointError(UserError):
    """A checkpoint needs more than tensors and allow-listed types to load, i.e. it could run code."""


def unsafe_globals(path: Path) -> list[str]:
    """The globals a file names beyond the allow-list, for the message (empty where torch cannot list)."""
    try:
        return get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy (non-zip) files and damaged archives cannot be listed
        return []


def read_checkpoint(path: str | Path, trust: bool = False) -> object:
    """Unpickle a checkpoint file with torch's safe loader; `trust` is the user's explicit opt-in to a
    full unpickle."""
    path = Path(path)
    if trust:
        log.warning("trust_checkpoint=true: unpickling '%s' fully; it can run code it names", path)
    try:
        return _torch_load(path, trust)
    except pickle.UnpicklingError as e:
        if trust or "Weights only load failed" not in str(e):
            raise
        named = unsafe_globals(path)
        raise UntrustedCheckpointError(
            f"checkpoint '{path}' needs more than weights to load"
            + (f" (it names {', '.join(named)})" if named else "")
            + f": refused, since unpickling it could run code. {TRUST_HINT}"
        ) from e


def _torch_load(path: Path, trust: bool) -> object:
    """Memory-mapped where the format allows: a resume file can be several GB, most of it optimizer state."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust, mmap=True)
    except RuntimeError:  # files in torch's legacy (non-zip) format cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=not trust)


def is_lightning_checkpoint(checkpoint: object) -> bool:
    """Lightning files carry their version and a prefixed `state_dict`; plain state dicts carry neither."""
    return (
        isinstance(checkpoint, dict)
        and "pytorch-lightning_version" in checkpoint
        and "state_dict" in checkpoint
    )


def checkpoint_state_dict(
    path: str | Path, lightning_required: bool = False, trust: bool = False
) -> dict[str, torch.Tensor]:
    """The open_clip model's weights from either kind of file, with ClipModule's `model.` prefix removed.

    `lightning_required`: only a checkpoint written by a training run will do (resuming needs its
    optimizer, schedule and data position, which a plain state dict lacks).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingInputError(f"checkpoint '{path}' does not exist (ckpt_path)")
    try:
        state, lightning = _read_state_dict(path, trust)
    except UserError:
        raise
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


def _read_state_dict(path: Path, trust: bool) -> tuple[dict[str, torch.Tensor], bool]:
    """Unwrap a Lightning checkpoint ourselves; open_clip's reader handles every plain format (with the
    same `weights_only` rule). Also says which kind it was."""
    if path.suffix == ".safetensors":
        return open_clip.factory.load_state_dict(str(path)), False
    checkpoint = read_checkpoint(path, trust)
    if is_lightning_checkpoint(checkpoint):
        prefixed = checkpoint["state_dict"].items()
        return {k[len(MODULE_PREFIX) :]: v for k, v in prefixed if k.startswith(MODULE_PREFIX)}, True
    return open_clip.factory.load_state_dict(str(path), weights_only=not trust), False


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


def load_weights(model: nn.Module, path: str | Path, model_name: str, trust: bool = False) -> None:
    """Load a checkpoint into `model` strictly; a file from another architecture fails before any work."""
    state = checkpoint_state_dict(path, trust=trust)
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
