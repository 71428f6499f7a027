"""Configs composed from the packaged config directory with Hydra's own settings, as the CLI sees them."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from fashion_clip.config import CONFIG_DIR


def compose_with_hydra(config_name: str, overrides: list[str]) -> DictConfig:
    """`conf/<config_name>.yaml` with `overrides` and its `hydra` node, clearing an earlier test's Hydra."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
