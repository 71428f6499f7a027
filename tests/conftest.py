"""Shared fixtures: a small demo catalogue on disk, the tiny model and its inputs, and Hydra configs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from _pytest.nodeid import NodeId
from helpers.hf_tokenizer import save_word_level_tokenizer, shard_captions
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from fashion_clip.api import compose_with_hydra
from fashion_clip.demo.catalogue import generate_demo_catalogue
from fashion_clip.models.factory import ClipBundle, create_clip

SMALL_CATALOGUE = {"train": 48, "val": 16, "test": 16}

# `make test` runs the suite on every core (pytest-xdist, --dist loadgroup): each test goes to whichever
# worker is free, except the tests of one `xdist_group`, which run one after another on one worker
# (`_stamp_group` below makes xdist 3.8 see the groups on pytest 9).
# Tests that start a gloo process group (mp.spawn ranks, Lightning DDP) or a Jupyter kernel carry
# `@pytest.mark.xdist_group("local_ports")`: each picks a free local port for other processes to bind
# later, so two at once could pick the same one, and two DDP runs at once on 2 cores would keep their
# ranks waiting on each other at every barrier.
GROUPED_MODULES = {
    # its DDP runs (until the file carries the marker itself)
    "test_damaged_shards.py": "local_ports",
}


def _uses_module_scoped_fixture(item: pytest.Item) -> bool:
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    if fixtureinfo is None:
        return False
    return any(
        defs and defs[-1].scope in ("module", "class", "package")
        for defs in fixtureinfo.name2fixturedefs.values()
    )


def _stamp_group(item: pytest.Item) -> None:
    """Append `@group` to the node id, as xdist's loadgroup scheduler expects: pytest 9 keeps the id in
    `Item._id`, so xdist 3.8's own stamp (on `_nodeid`) no longer reaches the scheduler."""
    marker = item.get_closest_marker("xdist_group")
    if marker is None or not isinstance(getattr(item, "_id", None), NodeId) or "@" in item.nodeid:
        return
    name = marker.args[0] if marker.args else marker.kwargs.get("name", "default")
    item._id = NodeId.parse(f"{item.nodeid}@{name}")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group what must share a worker: the modules above, and the tests of a module that share a
    module-scoped fixture (built once per worker that runs them: a model export, a benchmark run)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            if item.path.name in GROUPED_MODULES:
                item.add_marker(pytest.mark.xdist_group(GROUPED_MODULES[item.path.name]))
            elif _uses_module_scoped_fixture(item):
                item.add_marker(pytest.mark.xdist_group(f"module_fixture:{item.path.name}"))
        if getattr(config.option, "loadgroup", False):
            _stamp_group(item)


def pytest_configure(config: pytest.Config) -> None:
    """Give each xdist worker (and the processes it starts) its share of the cores for torch: with 2
    workers of 2 threads each on 2 cores, a training-heavy subset ran 2.3x slower (477 s vs 215 s)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, torch.get_num_threads() // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="session")
def small_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few dozen products: enough for every split to have batches, quick enough for each session."""
    root = tmp_path_factory.mktemp("catalogue")
    generate_demo_catalogue(root / "demo", products=SMALL_CATALOGUE, image_size=64, shard_size=40)
    return root


@pytest.fixture(scope="session")
def stand_in_tokenizer(small_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved Hugging Face tokenizer over the demo captions' words, for `model.tokenizer=` offline."""
    return save_word_level_tokenizer(shard_captions(small_catalogue), tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_clip() -> ClipBundle:
    """The tiny model's transforms and tokenizer, for data modules (its random weights are never used)."""
    return create_clip("FashionCLIP-Tiny")


@pytest.fixture
def tiny_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Six random 64x64 images and token ids: the tiny model's inputs for comparing two of its variants."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, 64, 64, generator=generator), torch.randint(
        1, 1000, (6, 32), generator=generator
    )


@pytest.fixture
def compose_train(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose `conf/<config_name>.yaml` as the CLI would, with outputs in tmp and data from `data_dir`."""

    def _compose(*overrides: str, data_dir: Path | None = None, config_name: str = "train") -> DictConfig:
        cfg = compose_with_hydra(config_name, list(overrides))
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg.hydra  # the CLI's job config never carries it either
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.data_dir = str(data_dir or tmp_path / "data")
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
