"""Export to plain open_clip: the file loads without fashion_clip and embeds like the trained model."""

from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path

import open_clip
import pytest
import torch
from helpers.lightning_trainer import save_lightning
from helpers.python_subprocess import run_python
from helpers.tiny_model import TINY, random_tiny, save_tiny_weights, save_trained_lora_tiny

from fashion_clip.deploy.export import export_open_clip, plain_state_dict
from fashion_clip.errors import ConfigError
from fashion_clip.losses import SigLipLoss
from fashion_clip.models import factory
from fashion_clip.models.clip_module import ClipModule
from fashion_clip.models.factory import create_model, create_tokenizer

# the smallest built-in open_clip architecture (43M parameters): builds and loads in about a second on CPU
BUILTIN = "ViT-S-32-alt"
TEXTS = ["a red silk midi dress", "black leather ankle boots"]

# runs in a fresh interpreter that only has torch and open_clip, as a user without fashion_clip would
PLAIN_OPEN_CLIP = f"""
import sys, open_clip, torch
name, image_path, out, *models = sys.argv[1:]
image, tokens = torch.load(image_path), open_clip.get_tokenizer(name)({TEXTS!r})
results = {{}}
for path in models:
    model = open_clip.create_model_and_transforms(name, pretrained=path)[0].eval()
    with torch.no_grad():
        results[path] = model.encode_image(image, normalize=True), model.encode_text(tokens, normalize=True)
assert "fashion_clip" not in sys.modules, "plain open_clip must not need fashion_clip"
torch.save(results, out)
"""


@pytest.fixture(scope="module")
def builtin(tmp_path_factory: pytest.TempPathFactory) -> tuple[open_clip.CLIP, Path]:
    """A random-init built-in model and its weights saved as a plain state dict."""
    torch.manual_seed(0)
    model = create_model(BUILTIN)[0].eval()
    path = tmp_path_factory.mktemp("builtin") / "weights.pt"
    torch.save(model.state_dict(), path)
    return model, path


@torch.no_grad()
def embeddings(model: open_clip.CLIP, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What fashion_clip computes for the fixed inputs, with its own tokenizer."""
    tokens = create_tokenizer(BUILTIN)(TEXTS)
    return model.encode_image(image, normalize=True), model.encode_text(tokens, normalize=True)


@pytest.mark.slow
def test_exports_load_in_plain_open_clip_and_embed_identically(
    builtin: tuple[open_clip.CLIP, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, weights = builtin
    plain = export_open_clip(BUILTIN, weights, tmp_path / "from_state_dict.pt")

    siglip_trained = copy.deepcopy(model)
    module = ClipModule(siglip_trained, SigLipLoss(), functools.partial(torch.optim.AdamW))
    with torch.no_grad():
        siglip_trained.logit_bias.fill_(-3.0)
    ckpt = save_lightning(module, tmp_path / "last.ckpt")
    with caplog.at_level(logging.INFO, logger="fashion_clip.deploy.export"):
        lightning = export_open_clip(BUILTIN, ckpt, tmp_path / "from_lightning.pt")
    assert "dropped logit_bias=-3.0000" in caplog.text
    exported = torch.load(lightning, weights_only=True)
    assert "logit_bias" not in exported
    assert exported["logit_scale"] == siglip_trained.logit_scale

    torch.manual_seed(1)
    torch.save(torch.randn(2, 3, 224, 224), tmp_path / "image.pt")
    result = run_python("-c", PLAIN_OPEN_CLIP, BUILTIN, "image.pt", "out.pt", plain, lightning, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = torch.load(tmp_path / "out.pt", weights_only=True)
    expected = embeddings(model, torch.load(tmp_path / "image.pt"))
    for path in (plain, lightning):
        for got, want in zip(loaded[str(path)], expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # a random init would not match


def test_bias_of_a_siglip_architecture_is_kept() -> None:
    model = random_tiny(0)
    model.logit_bias = torch.nn.Parameter(torch.tensor(-2.0))
    assert "logit_bias" in plain_state_dict(model, architecture_has_bias=True)
    assert "logit_bias" not in plain_state_dict(model, architecture_has_bias=False)


def test_existing_out_is_kept_unless_overwrite(tmp_path: Path) -> None:
    save_tiny_weights(tmp_path / "weights.pt", seed=0)
    out = tmp_path / "model.pt"
    out.write_text("mine")
    with pytest.raises(ConfigError, match=r"model\.pt' already exists.*overwrite=true"):
        export_open_clip(TINY, tmp_path / "weights.pt", out)
    assert out.read_text() == "mine"
    export_open_clip(TINY, tmp_path / "weights.pt", out, overwrite=True)
    assert torch.load(out, weights_only=True).keys() == torch.load(tmp_path / "weights.pt").keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "weights.pt"]


@pytest.mark.slow
def test_cli_resolves_paths_from_the_launch_dir_and_rejects_another_architecture(
    builtin: tuple[open_clip.CLIP, Path], tmp_path: Path
) -> None:
    state = torch.load(save_tiny_weights(tmp_path / "tiny.pt", seed=0))
    cli = ["-m", "fashion_clip.export", "model=tiny", f"hydra.run.dir={tmp_path / 'run'}"]

    done = run_python(*cli, "ckpt_path=tiny.pt", "out=exported/model.pt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    exported = torch.load(tmp_path / "exported" / "model.pt", weights_only=True)
    assert exported.keys() == state.keys() and all(torch.equal(exported[k], state[k]) for k in state)

    _, other = builtin
    failed = run_python(*cli, f"ckpt_path={other}", "out=other.pt", cwd=tmp_path)
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    assert "does not fit model.name='FashionCLIP-Tiny'" in failed.stderr  # refused before any model is built
    assert "shape mismatches" in failed.stderr and "model=tiny, vitb32" in failed.stderr
    assert not (tmp_path / "other.pt").exists()


def test_an_open_clip_export_builds_no_tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hugging Face tokenizer (SigLIP2's) would be downloaded: exporting weights never asks for one."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the export built a tokenizer")

    monkeypatch.setattr(factory, "create_tokenizer", refuse)
    out = export_open_clip(TINY, save_tiny_weights(tmp_path / "weights.pt", seed=0), tmp_path / "plain.pt")
    assert torch.load(out, weights_only=True).keys() == random_tiny(0).state_dict().keys()


def test_lora_checkpoint_exports_merged_into_the_plain_architecture(tmp_path: Path) -> None:
    from fashion_clip.models.lora import LoraSettings

    lora = LoraSettings(enabled=True, targets=("mlp.c_fc", "mlp.c_proj"))
    adapted, ckpt = save_trained_lora_tiny(tmp_path / "lora.pt", lora)
    out = export_open_clip(TINY, ckpt, tmp_path / "plain.pt", lora=lora)
    plain, _, _ = create_model(TINY)
    state = torch.load(out, weights_only=True)
    assert set(state) == set(plain.state_dict())
    plain.load_state_dict(state)
    image, text = torch.randn(2, 3, 64, 64), torch.randint(1, 1000, (2, 32))
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(adapted.encode_image(image), plain.encode_image(image), atol=1e-5)
        assert torch.allclose(adapted.encode_text(text), plain.encode_text(text), atol=1e-5)
