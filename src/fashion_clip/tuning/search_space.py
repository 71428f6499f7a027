"""The search space as config (`hparams_search.params`), so each range is overridable on the command line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from fashion_clip.errors import ConfigError

KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class SearchParam:
    """One searched config key: `name` is the Optuna parameter, `key` the dotted config key it sets."""

    name: str
    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Optuna's suggestion for this trial (seeded sampler: the same study proposes the same values)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def ends(self) -> dict[str, Any]:
        """Where a mistake in the range shows, by the sub-key that sets it: `low` and `high` (typed as
        `suggest` types them) or each `choices[i]`."""
        if self.kind == "categorical":
            return {f"choices[{i}]": choice for i, choice in enumerate(self.choices)}
        cast = int if self.kind == "int" else float
        return {"low": cast(self.low), "high": cast(self.high)}


def _param(name: str, spec: Mapping[str, Any]) -> SearchParam:
    """One entry of `hparams_search.params`, checked so a typo fails before the first trial."""
    where = f"hparams_search.params.{name}"
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{where}.type={kind!r} is not one of {', '.join(KINDS)}")
    if not spec.get("key"):
        raise ConfigError(f"{where}.key is not set: give the config key it searches (e.g. optimizer.lr)")
    if kind == "categorical":
        if not spec.get("choices"):
            raise ConfigError(f"{where}.choices is empty: list the values to try")
        return SearchParam(name, spec["key"], kind, choices=tuple(spec["choices"]))
    low, high = spec.get("low"), spec.get("high")
    if low is None or high is None or low > high or (spec.get("log") and low <= 0):
        raise ConfigError(
            f"{where}: low={low} and high={high} must be set with low <= high (and low > 0 with log: true)"
        )
    return SearchParam(name, spec["key"], kind, low, high, bool(spec.get("log")))


def has_key(cfg: DictConfig, key: str) -> bool:
    """Whether the dotted `key` exists (a null value counts: `loss.init_logit_scale: null` is searchable)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node


def search_space(params: DictConfig, cfg: DictConfig) -> list[SearchParam]:
    """The params whose key exists in `cfg`; `optional: true` ones are left out where it does not
    (e.g. `loss.init_logit_scale`, which the SigLIP loss has and InfoNCE does not)."""
    space = []
    for name, spec in params.items():
        if spec is None:  # removed with `hparams_search.params.<name>=null`
            continue
        param = _param(str(name), spec)
        if not has_key(cfg, param.key):
            if spec.get("optional"):
                continue
            raise ConfigError(
                f"hparams_search.params.{name}.key={param.key!r} is not a key of this run's config"
            )
        space.append(param)
    if not space:
        raise ConfigError("hparams_search.params holds no parameter this run's config has: nothing to search")
    return space
