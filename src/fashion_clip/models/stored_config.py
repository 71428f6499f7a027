"""A model config read back from a file (an index), rebuilt through the factory without running code from it.

Hydra's `instantiate` calls whatever `_target_` a config names, anywhere in it, so a config someone else
wrote is never instantiated: its fields are checked against the plain types of the `model.*` switches and
passed to `create_clip` by name. Indexes written before this rule stored the factory's own `_target_`
strings; exactly those are accepted (and never called), any other `_target_` is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fashion_clip.errors import UserError
from fashion_clip.models.factory import ClipBundle, create_clip
from fashion_clip.models.lora import LoraSettings
from fashion_clip.models.tower_lock import LockSettings

TARGET = "_target_"
# the `_target_` strings older indexes stored at each place: Hydra's view of our own config, never called
LEGACY_TARGETS = {
    (): "fashion_clip.models.factory.create_clip",
    ("lock",): "fashion_clip.models.tower_lock.LockSettings",
    ("lora",): "fashion_clip.models.lora.LoraSettings",
}
OPTIONAL_TEXT = (str, type(None))
# top-level fields and the types a value may have; `cache_dir` and `compile*` are settings of the machine
# that searches, `grad_checkpointing` and `patch_dropout` of training, not of the model, so they are checked
# but not taken from the file
SCALARS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "pretrained": OPTIONAL_TEXT,
    "tokenizer": OPTIONAL_TEXT,
    "cache_dir": OPTIONAL_TEXT,
    "force_image_size": (int, type(None)),
    "grad_checkpointing": (bool,),
    "patch_dropout": (int, float),
    "compile": (bool,),
    "compile_backend": (str,),
}
NOT_TAKEN = ("cache_dir", "compile", "compile_backend", "grad_checkpointing", "patch_dropout")
SETTINGS: dict[str, type] = {"lock": LockSettings, "lora": LoraSettings}
SETTING_TYPES = (bool, int, float, str)


class StoredConfigError(UserError):
    """A model config in a file holds something other than plain model settings."""


def without_targets(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as it is stored in a file: plain values, no `_target_` at any depth."""
    return {
        key: without_targets(value) if isinstance(value, Mapping) else value
        for key, value in config.items()
        if key != TARGET
    }


def _refuse(source: str | Path, key: str, value: Any, why: str) -> StoredConfigError:
    """One message shape for every refusal: the file, the key, the value, why and what to do."""
    return StoredConfigError(
        f"'{source}': stored model config {key}={value!r} {why}. A stored model config holds plain model "
        "settings only (a `_target_` or object there would run code when loaded): rebuild the file with "
        "`python -m fashion_clip.index`, or use one you made yourself."
    )


def _check_target(config: Mapping[str, Any], place: tuple[str, ...], source: str | Path) -> None:
    """Only the exact factory string an older index stored at this place may stand in `_target_`."""
    if TARGET in config and config[TARGET] != LEGACY_TARGETS.get(place):
        key = ".".join((*place, TARGET))
        raise _refuse(source, key, config[TARGET], "names code to call")


def _setting_value(value: Any) -> bool:
    """A switch value as the config files write them: a scalar or a list of strings."""
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return isinstance(value, SETTING_TYPES)


def _settings(config: Any, name: str, source: str | Path) -> Any:
    """`lock`/`lora` as their dataclass, built from checked fields (the dataclass checks the values)."""
    if not isinstance(config, Mapping):
        raise _refuse(source, name, config, "is not a mapping of settings")
    _check_target(config, (name,), source)
    fields = {field.name for field in dataclasses.fields(SETTINGS[name])}
    values = {key: value for key, value in config.items() if key != TARGET}
    for key, value in values.items():
        if key not in fields:
            raise _refuse(
                source, f"{name}.{key}", value, f"is not a {name} setting ({', '.join(sorted(fields))})"
            )
        if not _setting_value(value):
            raise _refuse(source, f"{name}.{key}", value, "is not a plain value")
    return SETTINGS[name](**values)


def _has_type(value: Any, kinds: tuple[type, ...]) -> bool:
    """isinstance, except that a boolean is no number (`force_image_size: true` is a mistake)."""
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def checked_arguments(config: Mapping[str, Any], source: str | Path) -> dict[str, Any]:
    """`create_clip`'s keyword arguments from a stored config, each field's key and type checked."""
    _check_target(config, (), source)
    arguments: dict[str, Any] = {}
    for key, value in config.items():
        if key == TARGET:
            continue
        if key in SETTINGS:
            arguments[key] = _settings(value, key, source)
        elif key not in SCALARS:
            raise _refuse(source, key, value, "is not a model setting")
        elif not _has_type(value, SCALARS[key]):
            raise _refuse(source, key, value, "has the wrong type")
        elif key not in NOT_TAKEN:
            arguments[key] = value
    if "name" not in arguments:
        raise _refuse(source, "name", None, "is missing")
    return arguments


def clip_from_stored(config: Mapping[str, Any], source: str | Path, **overrides: Any) -> ClipBundle:
    """The bundle a stored config describes, built by field and never instantiated; `overrides` are the
    caller's own arguments (`pretrained=None` when a checkpoint replaces every weight)."""
    return create_clip(**checked_arguments(config, source) | overrides)
