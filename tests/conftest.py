"""Shared fixtures: a small demo catalogue on disk and Hydra configs composed for tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from fashion_clip.config import CONFIG_DIR
from fashion_clip.demo.catalogue import generate_demo_catalogue

SMALL_CATALOGUE = {"train": 48, "val": 16, "test": 16}


@pytest.fixture(scope="session")
def small_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few dozen products: enough for every split to have batches, quick enough for each session."""
    root = tmp_path_factory.mktemp("catalogue")
    generate_demo_catalogue(root / "demo", products=SMALL_CATALOGUE, image_size=64, shard_size=40)
    return root


@pytest.fixture
def compose_train(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose `conf/<config_name>.yaml` as the CLI would, with outputs in tmp and data from `data_dir`."""

    def _compose(*overrides: str, data_dir: Path | None = None, config_name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg.hydra  # the CLI's job config never carries it either
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.data_dir = str(data_dir or tmp_path / "data")
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
