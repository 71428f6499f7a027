"""`train`'s pre-flight for a whole search, before its first trial: on the run's config and at the search
space's extremes, so a mistake stops in seconds instead of filling the study with failed trials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from fashion_clip.errors import ConfigError, UserError
from fashion_clip.preflight import preflight
from fashion_clip.tuning.objective import listed, with_values
from fashion_clip.tuning.search_space import SearchParam

# the combined corners: every parameter at its first end (low, first choice), then at its last
CORNERS = (("low ends (first choices)", 0), ("high ends (last choices)", -1))


def extreme_points(space: Sequence[SearchParam]) -> list[tuple[str, dict[str, Any]]]:
    """(what to name, values to set): each parameter alone at each end or choice, so a refusal names the
    sub-key to change; then all at once at both corners, for mistakes only a combination makes."""
    points = [
        (f"hparams_search.params.{param.name}.{end}={value} (sets {param.key})", {param.key: value})
        for param in space
        for end, value in param.ends().items()
    ]
    if len(space) > 1:
        for corner, pick in CORNERS:
            values = {param.key: list(param.ends().values())[pick] for param in space}
            points.append((f"hparams_search.params all at their {corner}: {listed(values)}", values))
    return points


def preflight_search(cfg: DictConfig, space: Sequence[SearchParam]) -> None:
    """`train`'s checks on the run's config, then on it at each extreme point of the search space."""
    preflight(cfg, "train")
    for name, values in extreme_points(space):
        try:
            preflight(with_values(cfg, values), "train")
        except UserError as err:
            raise ConfigError(
                f"the search space reaches a config that train refuses. {name}: {str(err).rstrip('.')}. "
                "Change that range or choice under hparams_search.params; no trial was started."
            ) from err
