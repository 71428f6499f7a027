"""Loading weights from Lightning checkpoints and plain state dicts; errors for files that do not fit."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import safetensors.torch
import torch
from helpers.lightning_trainer import save_lightning
from helpers.tiny_model import TINY, random_tiny

from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.losses import SigLipLoss
from fashion_clip.models.checkpoint import checkpoint_state_dict, is_lightning_checkpoint, load_weights
from fashion_clip.models.clip_module import ClipModule


def assert_same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert own.keys() == state.keys()
    assert all(torch.equal(own[k], state[k]) for k in own)


def test_plain_state_dict_loads(tmp_path: Path) -> None:
    source = random_tiny(0)
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    target = random_tiny(1)
    load_weights(target, tmp_path / "plain.pt", TINY)
    assert_same_weights(target, source.state_dict())


def test_safetensors_loads(tmp_path: Path) -> None:
    source = random_tiny(0)
    safetensors.torch.save_file(source.state_dict(), tmp_path / "model.safetensors")
    target = random_tiny(1)
    load_weights(target, tmp_path / "model.safetensors", TINY)
    assert_same_weights(target, source.state_dict())


def test_lightning_checkpoint_keeps_the_siglip_bias(tmp_path: Path) -> None:
    source = random_tiny(0)
    module = ClipModule(source, SigLipLoss(), functools.partial(torch.optim.AdamW))
    with torch.no_grad():
        source.logit_bias.fill_(-7.5)
    path = save_lightning(module, tmp_path / "last.ckpt")
    assert is_lightning_checkpoint(torch.load(path, weights_only=False))
    target = random_tiny(1)
    assert target.logit_bias is None
    load_weights(target, path, TINY)
    assert target.logit_bias.item() == -7.5
    assert target.logit_scale.item() == pytest.approx(math.log(10))
    assert_same_weights(target, source.state_dict())


def test_only_the_model_prefix_is_read(tmp_path: Path) -> None:
    state = random_tiny(0).state_dict()
    checkpoint = {
        "pytorch-lightning_version": "2.6.0",
        "state_dict": {"loss.scale": torch.ones(1), **{f"model.{k}": v for k, v in state.items()}},
    }
    torch.save(checkpoint, tmp_path / "module.ckpt")
    loaded = checkpoint_state_dict(tmp_path / "module.ckpt")
    assert loaded.keys() == state.keys()
    assert not is_lightning_checkpoint(state)


def test_other_architecture_names_keys_shapes_and_preset(tmp_path: Path) -> None:
    state = random_tiny(0, force_image_size=32).state_dict()
    del state["text_projection"]
    state["visual.extra"] = torch.zeros(2)
    torch.save(state, tmp_path / "other.pt")
    target = random_tiny(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ConfigError) as info:
        load_weights(target, tmp_path / "other.pt", TINY)
    message = str(info.value)
    assert "1 missing (e.g. text_projection)" in message
    assert "1 unexpected (e.g. visual.extra)" in message
    assert "visual.positional_embedding (17, 128) in the file vs (65, 128) in the model" in message
    assert f"model.name='{TINY}'" in message and "model=" in message and "other.pt" in message
    assert_same_weights(target, before)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="nothing.ckpt.*ckpt_path"):
        load_weights(random_tiny(0), tmp_path / "nothing.ckpt", TINY)


@pytest.mark.parametrize("name", ["truncated.ckpt", "model.safetensors", "notes.pt"])
def test_damaged_file_is_a_user_error(tmp_path: Path, name: str) -> None:
    torch.save(random_tiny(0).state_dict(), tmp_path / "full.pt")
    whole = (tmp_path / "full.pt").read_bytes()
    (tmp_path / name).write_bytes(whole[: len(whole) // 2] if name.startswith("truncated") else b"hello")
    with pytest.raises(UserError, match=f"{name}' could not be read"):
        load_weights(random_tiny(1), tmp_path / name, TINY)
