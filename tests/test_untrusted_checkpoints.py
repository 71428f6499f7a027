"""Checkpoints and indexes from someone else, crafted as an attacker would: no code runs, the user learns why.

Each crafted file names a call that would create a marker file if it ran. Every entry point that reads a
checkpoint or an index is handed one through the real CLI; the run must stop with exit 2 and a message,
and the marker must not exist. The opt-in (`trust_checkpoint=true`) loads a harmless file that needs it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch
from helpers.entry_in_process import run_entry
from helpers.python_subprocess import run_python
from helpers.search_index import index_of, load_tiny
from helpers.tiny_model import TINY, random_tiny, save_tiny_weights

from fashion_clip import api
from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.models.checkpoint import UntrustedCheckpointError, load_weights, read_checkpoint
from fashion_clip.models.identity import ModelIdentity
from fashion_clip.models.stored_config import StoredConfigError, checked_arguments
from fashion_clip.models.tower_lock import LockSettings
from fashion_clip.retrieval.index_file import save_index


class Payload:
    """Unpickles into a shell command: what a malicious checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def lightning_like(state: dict[str, torch.Tensor], extra: object) -> dict[str, object]:
    """A checkpoint that looks like a training run's, with `extra` among its entries."""
    return {
        "pytorch-lightning_version": "2.6.6",
        "global_step": 3,
        "epoch": 0,
        "state_dict": {f"model.{k}": v for k, v in state.items()},
        "callbacks": {"extra": extra},
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """evil.ckpt (runs `touch marker` when fully unpickled), needs_trust.ckpt (a harmless class beyond the
    allow-list), tiny.pt (plain weights) and an index built with them."""
    root = tmp_path_factory.mktemp("untrusted")
    state = random_tiny(0).state_dict()
    torch.save(lightning_like(state, Payload(root / "marker")), root / "evil.ckpt")
    torch.save(lightning_like(state, argparse.Namespace(lr=0.1)), root / "needs_trust.ckpt")
    save_tiny_weights(root / "tiny.pt", seed=0)
    return root


def test_a_crafted_checkpoint_is_refused_naming_what_it_holds(files: Path) -> None:
    with pytest.raises(UntrustedCheckpointError, match="posix.system") as refused:
        read_checkpoint(files / "evil.ckpt")
    assert "trust_checkpoint=true" in str(refused.value) and "evil.ckpt" in str(refused.value)
    with pytest.raises(UntrustedCheckpointError):
        load_weights(random_tiny(1), files / "evil.ckpt", TINY)
    assert not (files / "marker").exists()


def test_legacy_format_pickles_are_refused_too(files: Path, tmp_path: Path) -> None:
    torch.save({"x": Payload(tmp_path / "marker")}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(UntrustedCheckpointError):
        read_checkpoint(tmp_path / "old.pt")
    assert not (tmp_path / "marker").exists()


def test_opt_in_loads_a_file_that_needs_more_than_weights(files: Path) -> None:
    with pytest.raises(UntrustedCheckpointError, match="argparse.Namespace"):
        load_weights(random_tiny(1), files / "needs_trust.ckpt", TINY)
    model = random_tiny(1)
    load_weights(model, files / "needs_trust.ckpt", TINY, trust=True)
    assert all(torch.equal(v, random_tiny(0).state_dict()[k]) for k, v in model.state_dict().items())


def test_hydra_configs_saved_as_hyperparameters_load_safely(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    hparams = OmegaConf.create({"model": {"name": TINY, "lock": {"image": False}}, "ks": [1, 5], "lr": 1e-4})
    torch.save(
        lightning_like(random_tiny(0).state_dict(), None) | {"hyper_parameters": hparams}, tmp_path / "a"
    )
    assert read_checkpoint(tmp_path / "a")["hyper_parameters"]["ks"] == [1, 5]


def test_api_load_model_refuses_and_opts_in(files: Path) -> None:
    with pytest.raises(UntrustedCheckpointError):
        api.load_model("tiny", ckpt_path=files / "evil.ckpt")
    assert not (files / "marker").exists()
    bundle = api.load_model("tiny", ckpt_path=files / "needs_trust.ckpt", trust_checkpoint=True)
    assert torch.equal(bundle.model.logit_scale, random_tiny(0).logit_scale)


# --- stored model configs (indexes) -------------------------------------------------------------------


def stored(**changes: object) -> dict[str, object]:
    """An index's model config as this version writes it, with `changes` applied."""
    return {"name": TINY, "pretrained": None, "tokenizer": None, "lock": {"image": False}} | changes


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (stored(_target_="torch.save"), "_target_='torch.save'"),
        (stored(lock={"_target_": "builtins.exec", "image": False}), "lock._target_"),
        (stored(lora={"enabled": {"_target_": "os.system"}}), "lora.enabled"),
        (stored(lock={"image": False, "source": "x"}), "lock.source"),
        (stored(hook={"_target_": "os.system", "_args_": ["id"]}), "hook="),
        (stored(force_image_size=True), "force_image_size=True"),
        (stored(name=["FashionCLIP-Tiny"]), "name="),
        ({"pretrained": None}, "name=None"),
    ],
)
def test_stored_configs_with_code_or_foreign_fields_are_refused(config, named) -> None:
    with pytest.raises(StoredConfigError, match="index.pt") as refused:
        checked_arguments(config, "index.pt")
    assert named in str(refused.value)


def test_configs_older_indexes_wrote_still_rebuild(files: Path) -> None:
    legacy = stored(
        _target_="fashion_clip.models.factory.create_clip",
        lock={"_target_": "fashion_clip.models.tower_lock.LockSettings", "image": True},
        cache_dir=None,
        compile=True,
    )
    arguments = checked_arguments(legacy, "index.pt")
    assert arguments == {
        "name": TINY,
        "pretrained": None,
        "tokenizer": None,
        "lock": LockSettings(image=True),
    }
    bundle = load_clip(legacy, files / "tiny.pt", source="index.pt").bundle
    assert not any(p.requires_grad for p in bundle.model.visual.parameters())


# --- the real CLIs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crafted_indexes(files: Path, small_catalogue: Path) -> Path:
    """index.pt (tiny.pt's weights), stored_evil.pt (its ckpt_path is evil.ckpt) and target.pt (its model
    config has a nested `_target_` that writes a marker file when instantiated)."""
    bundle, identity = load_tiny(files / "tiny.pt")
    index = index_of(bundle, identity, small_catalogue / "demo" / "test")
    save_index(index, files / "index.pt")
    index.model = ModelIdentity(
        identity.config, str(files / "evil.ckpt"), identity.embed_dim, identity.fingerprint
    )
    save_index(index, files / "stored_evil.pt")
    writes = {"_target_": "torch.save", "obj": "x", "f": str(files / "marker")}
    config = identity.config | {"lock": {"image": writes}}
    index.model = ModelIdentity(config, str(files / "tiny.pt"), identity.embed_dim, identity.fingerprint)
    save_index(index, files / "target.pt")
    return files


HYDRA_CASES = [
    ("evaluate", ["ckpt_path={files}/evil.ckpt"]),
    ("train", ["ckpt_path={files}/evil.ckpt"]),
    ("wise", ["ckpt_path={files}/evil.ckpt"]),
    ("export", ["ckpt_path={files}/evil.ckpt", "out={files}/exported.pt"]),
    ("index", ["ckpt_path={files}/evil.ckpt", "source={catalogue}/demo/test", "out={files}/new_index.pt"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("entry", "overrides"), HYDRA_CASES, ids=[case[0] for case in HYDRA_CASES])
def test_every_entry_point_refuses_a_crafted_checkpoint(
    entry, overrides, files, small_catalogue, tmp_path
) -> None:
    filled = [o.format(files=files, catalogue=small_catalogue) for o in overrides]
    done = run_entry(
        entry,
        "model=tiny",
        *filled,
        f"paths.data_dir={small_catalogue}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "needs more than weights" in done.stderr and "trust_checkpoint=true" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (files / "marker").exists()


SEARCH_CASES = [
    (["--index", "{files}/index.pt", "--ckpt", "{files}/evil.ckpt"], "needs more than weights"),
    (["--index", "{files}/stored_evil.pt"], "needs more than weights"),
    (["--index", "{files}/target.pt"], "lock.image={'_target_': 'torch.save'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("arguments", "message"), SEARCH_CASES, ids=["--ckpt", "stored-ckpt", "target"])
def test_search_runs_no_code_from_an_index_or_its_checkpoint(
    arguments, message, crafted_indexes, tmp_path
) -> None:
    filled = [a.format(files=crafted_indexes) for a in arguments]
    done = run_entry("search", "red dress", *filled, "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (crafted_indexes / "marker").exists()


@pytest.mark.slow
def test_the_opt_in_reaches_evaluate_and_search(crafted_indexes, small_catalogue, tmp_path) -> None:
    done = run_python(
        "-m",
        "fashion_clip.evaluate",
        "model=tiny",
        f"ckpt_path={crafted_indexes}/needs_trust.ckpt",
        "trust_checkpoint=true",
        "protocol=[full]",
        f"paths.data_dir={small_catalogue}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = run_python(
        "-m",
        "fashion_clip.search",
        "red dress",
        "--index",
        f"{crafted_indexes}/index.pt",
        "--ckpt",
        f"{crafted_indexes}/needs_trust.ckpt",
        "--trust-checkpoint",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert found.returncode == 0, found.stderr[-3000:]
    assert "top " in found.stdout
