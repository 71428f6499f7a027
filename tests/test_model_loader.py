"""The one model loader (a user's config, a stored config, a checkpoint) and the one path resolver: a run
launched from a directory pre-flights and loads the same files, wherever the process happens to run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.search_index import load_tiny
from helpers.tiny_model import TINY, save_tiny_weights

from fashion_clip import api
from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.wise import wise
from fashion_clip.models.identity import clip_config
from fashion_clip.models.stored_config import StoredConfigError
from fashion_clip.records import FINETUNED
from fashion_clip.utils.launch import from_launch_dir, launch_reference

# a checkpoint the tests keep under their launch directory and never in the process's working directory
RELATIVE_CKPT = "checkpoints/launch-dir-weights.pt"


@pytest.fixture
def launch_dir(tmp_path: Path) -> Path:
    """A directory a user launches from, holding a checkpoint at a relative path."""
    ckpt = tmp_path / RELATIVE_CKPT
    ckpt.parent.mkdir(parents=True)
    save_tiny_weights(ckpt, seed=3)
    assert not Path(RELATIVE_CKPT).exists(), "the process's working directory must not hold the checkpoint"
    return tmp_path


def same_weights(model: torch.nn.Module, ckpt: Path) -> bool:
    """Whether the model holds exactly the checkpoint's tensors."""
    state = torch.load(ckpt, weights_only=True)
    return all(torch.equal(value, state[name]) for name, value in model.state_dict().items())


def test_a_user_config_and_checkpoint_load_with_the_identity_an_index_records(launch_dir: Path) -> None:
    cfg = api.compose("evaluate", ["model=tiny"], root_dir=launch_dir)
    loaded = load_clip(cfg.model, RELATIVE_CKPT, root=launch_dir)
    ckpt = (launch_dir / RELATIVE_CKPT).resolve()
    _, reference = load_tiny(ckpt)
    assert same_weights(loaded.bundle.model, ckpt)
    assert loaded.ckpt_path == str(ckpt) == loaded.identity.ckpt_path
    assert loaded.identity.fingerprint == reference.fingerprint
    # the resolved `model` config as search rebuilds it: plain values, no Hydra `_target_` anywhere
    assert loaded.identity.config["name"] == TINY and "_target_" not in str(loaded.identity.config)
    assert loaded.identity.config["lock"] == {k: v for k, v in cfg.model.lock.items() if k != "_target_"}


def test_a_stored_config_is_built_by_field_with_the_identity_of_a_direct_build(tmp_path: Path) -> None:
    ckpt = save_tiny_weights(tmp_path / "tiny.pt", seed=5)
    loaded = load_clip(clip_config(TINY), ckpt, source="index.pt")
    assert loaded.identity == load_tiny(ckpt)[1]  # existing indexes still match
    with pytest.raises(StoredConfigError, match="index.pt"):
        load_clip(clip_config(TINY, _target_="builtins.exec"), ckpt, source="index.pt")
    weights_only = load_clip(clip_config(TINY), ckpt, source="index.pt", with_tokenizer=False)
    assert weights_only.bundle.tokenizer is None and same_weights(weights_only.bundle.model, ckpt)


def test_an_export_and_a_checkpoint_together_are_refused_before_either_is_read() -> None:
    with pytest.raises(ConfigError, match="give onnx= or ckpt_path=, not both"):
        load_clip(None, "missing.ckpt", onnx="missing-export")


def test_user_paths_resolve_from_the_launch_dir(launch_dir: Path) -> None:
    assert from_launch_dir(launch_dir, RELATIVE_CKPT) == launch_dir / RELATIVE_CKPT
    assert from_launch_dir(launch_dir, "/abs/x.pt") == Path("/abs/x.pt")
    assert launch_reference(launch_dir, RELATIVE_CKPT) == str((launch_dir / RELATIVE_CKPT).resolve())
    assert launch_reference(launch_dir, "openai") == "openai" and launch_reference(launch_dir, None) is None


def test_a_relative_pretrained_file_is_read_from_the_launch_dir(launch_dir: Path) -> None:
    cfg = api.compose("evaluate", ["model=tiny", f"model.pretrained={RELATIVE_CKPT}"], root_dir=launch_dir)
    loaded = load_clip(cfg.model, root=launch_dir)
    assert same_weights(loaded.bundle.model, launch_dir / RELATIVE_CKPT)
    assert loaded.identity.config["pretrained"] == str((launch_dir / RELATIVE_CKPT).resolve())


def test_a_run_launched_elsewhere_preflights_and_loads_the_same_relative_checkpoint(
    launch_dir: Path, small_catalogue: Path
) -> None:
    """`api.compose(root_dir=X)` with a relative ckpt_path that exists under X only: evaluate and wise
    check and load X's file, and name it in their records."""
    common = ["protocol=[full]", "evaluation.num_workers=0", f"paths.data_dir={small_catalogue}"]
    overrides = [*common, f"ckpt_path={RELATIVE_CKPT}"]
    ckpt = str((launch_dir / RELATIVE_CKPT).resolve())
    (evaluated,) = api.evaluate(api.compose("evaluate", overrides, root_dir=launch_dir)).result
    assert (evaluated.stage, evaluated.checkpoint) == (FINETUNED, ckpt)
    mixed = api.run(api.compose("wise", [*overrides, "alphas=[1]"], root_dir=launch_dir), wise).result
    assert [(r.stage, r.checkpoint) for r in mixed] == [(FINETUNED, f"{ckpt}@alpha=1")]
    assert mixed[0].metrics == evaluated.metrics
    as_pretrained = api.compose(
        "evaluate", [*common, f"model.pretrained={RELATIVE_CKPT}"], root_dir=launch_dir
    )
    (base,) = api.evaluate(as_pretrained).result
    assert base.metrics == evaluated.metrics  # the same file, read as the base weights
