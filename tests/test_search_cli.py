"""The index and search command lines: end to end in subprocesses, and every user error exits 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.python_subprocess import run_python
from helpers.search_index import index_of, load_tiny, synthetic_index
from helpers.tiny_model import save_tiny_weights
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fashion_clip.api import compose_with_hydra
from fashion_clip.data.manifest import read_manifest
from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.retrieval.index_file import index_catalogue, load_index, save_index
from fashion_clip.retrieval.page import read_catalogue_image
from fashion_clip.search import main as search_main

DATA_URI = '<img src="data:image/jpeg;base64,'


def _run(cwd: Path, *args: object) -> subprocess.CompletedProcess:
    """`python -m *args` in `cwd` with a wide terminal, so the table does not fold ids across lines (a
    pytest-xdist worker's temp paths are longer: `.../popen-gw0/...` folded a row at 200 columns)."""
    return run_python("-m", *args, cwd=cwd, env={**os.environ, "COLUMNS": "400"})


@pytest.mark.slow
def test_index_then_search_by_image_end_to_end(small_catalogue: Path, tmp_path: Path) -> None:
    split = small_catalogue / "demo" / "test"
    save_tiny_weights(tmp_path / "tiny.pt", seed=0)
    made = _run(
        tmp_path,
        "fashion_clip.index",
        f"source={split}",
        "out=index.pt",
        "ckpt_path=tiny.pt",
        "evaluation.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert made.returncode == 0, made.stderr
    index = load_index(tmp_path / "index.pt")
    assert len(index) == read_manifest(split).num_samples
    assert index.model.ckpt_path == str(tmp_path / "tiny.pt")  # stored absolute: search runs from anywhere
    assert index.model.config["name"] == "FashionCLIP-Tiny"
    assert "_target_" not in index.model.config and "_target_" not in index.model.config["lock"]

    record = index.records[7]
    read_catalogue_image(record.source, record.key).save(tmp_path / "query.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = _run(
        elsewhere,
        "fashion_clip.search",
        "--image",
        "../query.png",
        "--index",
        "../index.pt",
        "--k",
        3,
        "--html",
        "results.html",
    )
    assert found.returncode == 0, found.stderr
    table_rows = [line for line in found.stdout.splitlines() if "demo-" in line and ".tar#" in line]
    assert len(table_rows) == 3 and record.product_id in table_rows[0] and record.key in table_rows[0]
    page = (elsewhere / "results.html").read_text(encoding="utf-8")
    assert page.count(DATA_URI) == 4  # the query image and three results


@pytest.fixture(scope="module")
def tiny_index(small_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the test split built with saved random weights (seed 0)."""
    root = tmp_path_factory.mktemp("tiny_index")
    bundle, identity = load_tiny(save_tiny_weights(root / "tiny.pt", seed=0))
    return save_index(index_of(bundle, identity, small_catalogue / "demo" / "test"), root / "index.pt")


def _exit_message(capsys: pytest.CaptureFixture, *argv: object) -> str:
    with pytest.raises(SystemExit) as exit_info:
        search_main([str(a) for a in argv])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_search_by_text_with_another_model_exits_2_naming_both(
    tiny_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    other = save_tiny_weights(tmp_path / "other.pt", seed=1)
    err = _exit_message(capsys, "red dress", "--index", tiny_index, "--ckpt", other)
    assert f"index built with FashionCLIP-Tiny (ckpt={tiny_index.parent / 'tiny.pt'}" in err
    assert f"query model is FashionCLIP-Tiny (ckpt={other}" in err and "rebuild the index" in err


def test_search_input_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    index = save_index(synthetic_index([2, 1]), tmp_path / "index.pt")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    cases = {
        "does not exist": ["boots", "--index", tmp_path / "none.pt"],
        "--k must be at least 1, got 0": ["boots", "--index", index, "--k", 0],
        "not both": ["boots", "--image", bad, "--index", index],
        "cannot decode query image .*broken.jpg": ["--image", bad, "--index", index],
    }
    for expected, argv in cases.items():
        assert re.search(expected, _exit_message(capsys, *argv)), expected


def test_faiss_backend_without_faiss_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    index = save_index(synthetic_index([1, 1]), tmp_path / "index.pt")
    assert "pip install faiss-cpu" in _exit_message(capsys, "boots", "--index", index, "--backend", "faiss")


@pytest.fixture
def compose_index(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """`conf/index.yaml` composed as the CLI would, launched from tmp_path."""

    def _compose(*overrides: str) -> DictConfig:
        cfg = compose_with_hydra("index", list(overrides))
        cfg.hydra.runtime.cwd = str(tmp_path)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


def test_index_config_errors_stop_before_any_work(
    compose_index: Callable[..., DictConfig], small_catalogue: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="source is not set"):
        index_catalogue(compose_index())
    (tmp_path / "index.pt").write_text("mine")
    with pytest.raises(ConfigError, match="index.pt' already exists: pass overwrite=true"):
        index_catalogue(compose_index(f"source={small_catalogue / 'demo' / 'test'}"))
    assert (tmp_path / "index.pt").read_text() == "mine"
    with pytest.raises(MissingInputError, match=r"source='.*missing/shards-\*\.tar'.*matched no file"):
        index_catalogue(compose_index("source=missing/shards-*.tar", "out=other.pt"))
    assert not (tmp_path / "other.pt").exists()
