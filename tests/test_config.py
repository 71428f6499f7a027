"""Hydra composition, model presets and the errors users see for bad names or missing downloads."""

from __future__ import annotations

import itertools
from pathlib import Path

import open_clip
import pytest
import torch
from helpers.config_presets import preset_names
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fashion_clip.api import compose_with_hydra
from fashion_clip.config import CONFIG_DIR
from fashion_clip.losses import InfoNCELoss, SigLipLoss
from fashion_clip.models.factory import create_clip, create_model

MODELS = ("tiny", "vitb32", "vitb16", "siglip2_vitb16_256")
DATA = ("demo", "demo_hard", "demo_hard_photos", "fashiongen", "fashiongen_aug", "indofashion")
MARQO = (
    "atlas",
    "deepfashion_inshop",
    "deepfashion_multimodal",
    "fashion200k",
    "imaterialist",
    "kagl",
    "polyvore",
)
DATA += tuple(f"marqo_{name}" for name in MARQO)
LOSSES = {"infonce": InfoNCELoss, "siglip": SigLipLoss}
REAL_PRESETS = {
    "vitb32": ("ViT-B-32", "laion2b_s34b_b79k"),
    "vitb16": ("ViT-B-16", "laion2b_s34b_b88k"),
    "siglip2_vitb16_256": ("ViT-B-16-SigLIP2-256", "webli"),
}


@pytest.mark.parametrize(
    ("model", "loss", "positives"), list(itertools.product(MODELS, LOSSES, ("pair", "product")))
)
def test_every_model_and_loss_composes(compose_train, model: str, loss: str, positives: str) -> None:
    cfg = compose_train(f"model={model}", f"loss={loss}", f"loss.positives={positives}")
    assert cfg.model._target_ == "fashion_clip.models.factory.create_clip"
    built = instantiate(cfg.loss)
    assert isinstance(built, LOSSES[loss]) and built.positives == positives
    assert cfg.model.name == REAL_PRESETS.get(model, ("FashionCLIP-Tiny",))[0]


def test_bases_are_not_listed_as_presets() -> None:
    assert preset_names("model") == sorted(MODELS)
    assert preset_names("data") == sorted(DATA)


@pytest.mark.parametrize(("group", "preset"), [("model", m) for m in MODELS] + [("data", d) for d in DATA])
def test_every_preset_has_the_keys_of_its_base_and_no_other(compose_train, group: str, preset: str) -> None:
    base = OmegaConf.load(Path(CONFIG_DIR) / group / "_base.yaml")
    assert list(compose_train(f"{group}={preset}")[group]) == list(base)


@pytest.mark.parametrize("group", ["model", "data"])
def test_a_base_chosen_as_a_preset_has_no_name(compose_train, group: str) -> None:
    assert OmegaConf.is_missing(compose_train(f"{group}=_base")[group], "name")


@pytest.mark.parametrize(
    ("config_name", "overrides", "task"),
    [("train", [], "train"), ("train", ["experiment=demo"], "demo"), ("evaluate", [], "evaluate")],
)
def test_runs_and_sweeps_go_under_the_task_name(config_name: str, overrides: list[str], task: str) -> None:
    hydra = compose_with_hydra(config_name, overrides).hydra
    assert Path(hydra.run.dir).parent == Path("outputs", task, "runs")
    assert Path(hydra.sweep.dir).parent == Path("outputs", task, "multiruns")


def test_gpu_trainer_resolves_mixed_fp16(compose_train) -> None:
    assert compose_train("trainer=gpu").trainer.precision == "16-mixed"


@pytest.mark.parametrize("preset", REAL_PRESETS)
def test_real_presets_name_their_pretrained_weights(compose_train, preset: str) -> None:
    cfg = compose_train(f"model={preset}")
    assert (cfg.model.name, cfg.model.pretrained) == REAL_PRESETS[preset]
    assert cfg.model.pretrained in open_clip.list_pretrained_tags_by_model(cfg.model.name)


@pytest.mark.parametrize("preset", REAL_PRESETS)
@pytest.mark.slow
def test_real_presets_build_with_random_init(compose_train, preset: str) -> None:
    cfg = compose_train(f"model={preset}", "model.pretrained=null")
    model, train_tf, val_tf = create_model(cfg.model.name, cfg.model.pretrained)
    image_size = model.visual.image_size
    assert image_size in ((224, 224), (256, 256), 224, 256)
    assert sum(p.numel() for p in model.parameters()) > 80e6


@pytest.mark.parametrize(("group", "bad"), [("model", "vitb99"), ("loss", "triplet"), ("data", "nope")])
def test_unknown_group_option_lists_valid_ones(compose_train, group: str, bad: str) -> None:
    with pytest.raises(MissingConfigException) as err:
        compose_train(f"{group}={bad}")
    message = str(err.value)
    assert bad in message
    expected = {"model": "vitb32", "loss": "siglip", "data": "demo"}[group]
    assert expected in message


@pytest.mark.slow
def test_missing_pretrained_download_says_how_to_use_a_local_file(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # read once at import: without this the hub is tried, with retries and back-off, for about 45 s
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError) as err:
        create_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")
    message = str(err.value)
    for needle in ("ViT-B-32", "laion2b_s34b_b79k", "model.pretrained=/path/to"):
        assert needle in message


def test_unknown_pretrained_tag_or_path_lists_known_tags() -> None:
    with pytest.raises(FileNotFoundError) as err:
        create_model("ViT-B-32", pretrained="/no/such/checkpoint.bin")
    assert "/no/such/checkpoint.bin" in str(err.value) and "laion2b_s34b_b79k" in str(err.value)


def test_unknown_open_clip_model_name_is_named() -> None:
    with pytest.raises(ValueError, match="ViT-Q-99"):
        create_model("ViT-Q-99")


@pytest.mark.slow
def test_siglip2_tokenizer_offline_names_the_local_option(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # read once at import (conftest's tokenizer helper imports it first): without this the hub is tried,
    # with retries and back-off, for about 45 s
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError) as err:
        create_clip("ViT-B-16-SigLIP2-256", pretrained=None)
    assert "model.tokenizer=" in str(err.value)
    assert "timm/ViT-B-16-SigLIP2-256" in str(err.value)


def test_local_checkpoint_path_loads(tmp_path) -> None:
    model, _, _ = create_model("FashionCLIP-Tiny")
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    loaded, _, _ = create_model("FashionCLIP-Tiny", pretrained=str(path))
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
