"""The composed config printed as a tree when a run starts (lightning-hydra-template's `print_config_tree`):
one branch per top-level key, a group's YAML highlighted, values resolved (paths, precision) where they
resolve. Hydra saves the same config, unresolved, in the run's `.hydra/config.yaml`."""

from __future__ import annotations

from typing import IO, Any

import yaml
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.measure import Measurement
from rich.syntax import Syntax
from rich.tree import Tree

# a width no config line reaches, for measuring the tree's natural width
UNBOUNDED = 10_000


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain values, resolved; unresolved when an interpolation fails, so the run reports
    that mistake itself (with its own message) instead of the printer."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(cfg, resolve=False)


def as_yaml(value: Any) -> str:
    """Block YAML without line folding: a long path stays on its key's line."""
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=float("inf")).rstrip("\n")


def config_tree(cfg: DictConfig) -> Tree:
    """A branch per top-level key in the config's order: a group (`model`, `trainer`) holds its YAML, a
    single value (`seed: 42`) is the branch itself."""
    tree = Tree("CONFIG", style="dim", guide_style="dim")
    for key, value in plain_config(cfg).items():
        if isinstance(value, dict | list):
            tree.add(str(key), style="bold").add(Syntax(as_yaml(value), "yaml", word_wrap=True))
        else:
            tree.add(Syntax(as_yaml({key: value}), "yaml", word_wrap=True))
    return tree


@rank_zero_only
def print_config_tree(cfg: DictConfig, file: IO[str] | None = None) -> None:
    """Print the tree (to stdout by default) once per run: rank zero only, since DDP's other ranks start the
    same entry point. As wide as its longest line, even in a log or a narrow terminal, where rich would
    otherwise fold or crop a long path."""
    tree = config_tree(cfg)
    console = Console(file=file)
    console.width = Measurement.get(console, console.options.update(max_width=UNBOUNDED), tree).maximum
    console.print(tree)
