"""LoRA adapters (peft) on the attention and MLP projections of either tower, and merging them for export.

`attn` targets open_clip's `nn.MultiheadAttention`: peft's LoRA for it adapts both the fused q/k/v
`in_proj_weight` and `out_proj`, by adding the low-rank update into the weights around each forward and
taking it out again afterwards (so the frozen attention weights can be off by float rounding, ~1e-8).
`attn.out_proj` on its own cannot be targeted: MultiheadAttention reads its weight without calling it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import open_clip
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from fashion_clip.errors import ConfigError
from fashion_clip.models.tower_lock import TOWERS, tower_of

EXAMPLES = 8
# A timm image tower (SigLIP2's) has no nn.MultiheadAttention: its attention is a plain module around the
# fused qkv and output Linears, and its MLP Linears are fc1/fc2, so open_clip's target names mean these there.
TIMM_TOWER = "visual.trunk."
TIMM_EQUIVALENTS = {"attn": ("attn.qkv", "attn.proj"), "mlp.c_fc": ("mlp.fc1",), "mlp.c_proj": ("mlp.fc2",)}
# the module types peft's LoRA can wrap
ADAPTABLE = (nn.Linear, nn.MultiheadAttention, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)


@dataclass(frozen=True)
class LoraSettings:
    """`model.lora`: which towers get adapters, on which modules, with which rank and scale."""

    enabled: bool = False
    towers: Sequence[str] = TOWERS
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: Sequence[str] = ("attn", "mlp.c_fc", "mlp.c_proj")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.towers) - set(TOWERS))
        if unknown or not self.towers:
            raise ConfigError(
                f"model.lora.towers={list(self.towers)}: use a non-empty subset of {list(TOWERS)}."
            )
        if self.r < 1:
            raise ConfigError(f"model.lora.r={self.r}: the adapter rank must be at least 1.")
        if not self.targets:
            raise ConfigError("model.lora.targets is empty: name module suffixes such as attn, mlp.c_fc.")


def _matches(name: str, target: str) -> bool:
    """peft's rule for a target in a list: the whole name, or its ending after a dot."""
    return name == target or name.endswith("." + target)


def _target_matches(name: str, target: str) -> bool:
    """A target names open_clip's modules; inside a timm image tower it names their timm equivalents."""
    if name.startswith(TIMM_TOWER) and target in TIMM_EQUIVALENTS:
        return any(_matches(name, equivalent) for equivalent in TIMM_EQUIVALENTS[target])
    return _matches(name, target)


def _under_attention(model: nn.Module, name: str) -> bool:
    """Modules inside nn.MultiheadAttention (its out_proj) are read as weights, never called."""
    return isinstance(model.get_submodule(name.rpartition(".")[0]), nn.MultiheadAttention)


def _adaptable(model: nn.Module, name: str) -> bool:
    """A module peft can wrap and whose adapter would actually run."""
    return isinstance(model.get_submodule(name), ADAPTABLE) and not _under_attention(model, name)


def _check_target(model: nn.Module, target: str, hits: list[str], candidates: list[str], towers: str) -> None:
    """A target that adapts nothing would train nothing; one under MultiheadAttention would be ignored."""
    if not hits:
        examples = [n for n in candidates if _adaptable(model, n)][:EXAMPLES]
        raise ConfigError(
            f"model.lora.targets: '{target}' matches no module in the {towers} tower(s); a target matches "
            f"module names ending with it, e.g. {', '.join(examples)}."
        )
    wrong = [model.get_submodule(n) for n in hits if not isinstance(model.get_submodule(n), ADAPTABLE)]
    if wrong:
        raise ConfigError(
            f"model.lora.targets: '{target}' matches a {type(wrong[0]).__name__} module; "
            f"LoRA adapts only {', '.join(t.__name__ for t in ADAPTABLE)} modules: name one of those."
        )
    if any(_under_attention(model, n) for n in hits):
        raise ConfigError(
            f"model.lora.targets: '{target}' is a part of nn.MultiheadAttention, which uses its weights "
            "without calling it, so its adapter would never run; target the attention module itself ('attn')."
        )


def lora_target_names(model: nn.Module, settings: LoraSettings) -> list[str]:
    """Full names of the modules to adapt: those in the chosen towers whose names end with a target."""
    candidates = [n for n, _ in model.named_modules() if n and tower_of(n) in settings.towers]
    names: list[str] = []
    for target in settings.targets:
        hits = [n for n in candidates if _target_matches(n, target)]
        _check_target(model, target, hits, candidates, "/".join(settings.towers))
        names += hits
    return list(dict.fromkeys(names))  # `attn` and `attn.qkv` both name a timm tower's qkv


def apply_lora(model: open_clip.CLIP, settings: LoraSettings) -> open_clip.CLIP:
    """Add adapters in place; the adapted towers' own weights freeze, everything else keeps its setting."""
    if not settings.enabled:
        return model
    names = lora_target_names(model, settings)
    before = {n: p.requires_grad for n, p in model.named_parameters() if tower_of(n) not in settings.towers}
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        # exact names: a list would also match the text tower's `transformer.*` inside `visual.transformer.*`
        target_modules="|".join(re.escape(n) for n in names),
    )
    inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        if name in before:
            param.requires_grad = before[name]
    return model


def _outermost_adapter_layers(model: nn.Module) -> list[tuple[str, BaseTunerLayer]]:
    """Adapter-wrapped modules not inside another one (MultiheadAttention's wraps its out_proj itself)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    return [(n, m) for n, m in layers if not any(n.startswith(outer + ".") for outer, _ in layers)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold adapters into the base weights, leaving a plain open_clip model with the original state-dict keys.

    Works in place and returns the model; a model without adapters comes back unchanged. Parameters keep
    their requires_grad (the merged weights stay frozen).
    """
    for name, layer in _outermost_adapter_layers(model):
        if hasattr(layer, "unload_and_optionally_merge_module"):
            base = layer.unload_and_optionally_merge_module(merge=True, safe_merge=True, adapter_names=None)
        else:
            layer.merge(safe_merge=True)
            base = layer.get_base_layer()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, base)
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model
