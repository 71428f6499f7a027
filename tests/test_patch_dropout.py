"""`model.patch_dropout`: open_clip's patch dropout drops that fraction of the image tokens while training,
none in eval mode, composes and trains, and is refused outside [0, 1)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.bench_smoke import BENCH_DIR
from helpers.tiny_model import TINY, random_tiny
from helpers.train_overrides import TINY_ONE_STEP
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Timer
from omegaconf import OmegaConf
from open_clip.transformer import PatchDropout

from fashion_clip.config import CONFIG_DIR
from fashion_clip.errors import ConfigError
from fashion_clip.models.stored_config import checked_arguments
from fashion_clip.preflight import preflight
from fashion_clip.training import train

sys.path.insert(0, str(BENCH_DIR))

from patch_dropout_cost import main as patch_dropout_cost  # noqa: E402

# the tiny model's image: 64 px in 8 px patches, so an 8 x 8 grid, and one class token
TINY_PATCHES = (64 // 8) ** 2


class TokenCounter:
    """The token count (class token included) of each batch the image tower's transformer takes."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.counts: list[int] = []
        self.handle = model.visual.transformer.register_forward_pre_hook(self._record)

    def _record(self, module: torch.nn.Module, args: tuple) -> None:
        self.counts.append(args[0].shape[1])  # (batch, tokens, width)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("fraction", "kept_patches"), [(0.0, 64), (0.25, 48), (0.5, 32), (0.75, 16)])
def test_training_mode_drops_that_fraction_of_the_patches(images, fraction: float, kept_patches: int) -> None:
    model = random_tiny(0, patch_dropout=fraction).train()
    tokens = TokenCounter(model)
    model.encode_image(images)
    model.eval()
    model.encode_image(images)
    assert kept_patches == round(TINY_PATCHES * (1 - fraction))
    assert tokens.counts == [1 + kept_patches, 1 + TINY_PATCHES]


def test_each_image_keeps_its_own_random_patches(images) -> None:
    model = random_tiny(0, patch_dropout=0.5).train()
    same = images[:1].expand(4, -1, -1, -1)
    embeddings = model.encode_image(same)
    assert not torch.allclose(embeddings[0], embeddings[1])


def test_eval_mode_embeds_as_the_model_without_patch_dropout(images) -> None:
    dropping = random_tiny(0, patch_dropout=0.5).eval()
    plain = random_tiny(1).eval()
    plain.load_state_dict(dropping.state_dict())  # no weights of its own: the state dicts match exactly
    with torch.no_grad():
        assert torch.equal(dropping.encode_image(images), plain.encode_image(images))


def test_the_config_switch_reaches_the_image_tower(compose_train) -> None:
    model = instantiate(compose_train("model.patch_dropout=0.5").model).model
    assert isinstance(model.visual.patch_dropout, PatchDropout) and model.visual.patch_dropout.prob == 0.5
    default = instantiate(compose_train().model).model
    assert isinstance(default.visual.patch_dropout, torch.nn.Identity)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.0", "model.patch_dropout=1.0 is out of range: it must be at least 0 and below 1"),
        ("-0.1", "model.patch_dropout=-0.1 is out of range"),
        ("half", "model.patch_dropout='half' is not a number"),
    ],
)
def test_a_fraction_outside_0_to_1_is_refused_naming_the_key(compose_train, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        preflight(compose_train(f"model.patch_dropout={value}"), "train")
    assert message in str(refused.value)


def test_an_index_stores_it_as_a_training_setting_not_rebuilt_from() -> None:
    assert checked_arguments({"name": TINY, "patch_dropout": 0.5}, "index.pt") == {"name": TINY}


class FitWatch(L.Callback):
    """The image tokens of every forward pass of a fit, tagged train or eval, and the trainer it ended in."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter = TokenCounter(pl_module.model)
        self.modes: list[bool] = []
        self.tagger = pl_module.model.visual.register_forward_pre_hook(
            lambda module, args: self.modes.append(module.training)
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trainer = trainer


def fit_with_half_the_patches(compose_train, catalogue: Path, *overrides: str) -> FitWatch:
    """A `tiny` fit at model.patch_dropout=0.5 on the small catalogue, as it went."""
    cfg = compose_train(*TINY_ONE_STEP, "model.patch_dropout=0.5", *overrides, data_dir=catalogue)
    watch = FitWatch()
    train(cfg, extra_callbacks=[watch])
    return watch


@pytest.mark.slow
def test_a_tiny_run_trains_with_half_the_patches(compose_train, small_catalogue) -> None:
    seen = fit_with_half_the_patches(
        compose_train, small_catalogue, "trainer.val_check_interval=1", "+trainer.limit_val_batches=1"
    )
    # the training step sees half the patches, validation after it all of them
    assert set(zip(seen.modes, seen.counter.counts, strict=True)) == {
        (True, 1 + TINY_PATCHES // 2),
        (False, 1 + TINY_PATCHES),
    }


def test_the_study_sweeps_both_arms_at_one_wall_time(compose_train) -> None:
    experiment = OmegaConf.load(Path(CONFIG_DIR) / "experiment" / "patch_dropout_study.yaml")
    assert experiment.hydra.sweeper.params == {"model.patch_dropout": "0,0.5"}
    cfg = compose_train("experiment=patch_dropout_study")
    assert (cfg.data.name, cfg.trainer.max_time, cfg.trainer.max_epochs) == ("demo_hard", "00:00:04:00", -1)
    assert cfg.scheduler._target_ == "fashion_clip.optim.const"


@pytest.mark.slow
def test_the_study_arm_stops_on_its_wall_time(compose_train, small_catalogue) -> None:
    """The study's runs have no epoch limit and a constant lr: Lightning's Timer ends them."""
    study = ("experiment=patch_dropout_study", "data=demo", "trainer.max_steps=-1")
    seen = fit_with_half_the_patches(compose_train, small_catalogue, *study, "trainer.max_time=00:00:00:08")
    assert seen.trainer.max_epochs == -1
    assert seen.trainer.current_epoch >= 1 and seen.trainer.global_step > 0  # several epochs, then the time
    (timer,) = [callback for callback in seen.trainer.callbacks if isinstance(callback, Timer)]
    assert 8 <= timer.time_elapsed("train") < 60


@pytest.mark.slow
def test_the_cost_benchmark_times_each_fraction_on_its_tokens(tmp_path: Path) -> None:
    args = ["--rows", "tiny", "--batch", "4", "--rounds", "2", "--steps", "1", "--warmup", "0"]
    assert patch_dropout_cost([*args, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "patch_dropout_cost.json").read_text())["rows"]
    assert [(row["p"], row["image tokens"]) for row in rows] == [(0.0, 65), (0.25, 49), (0.5, 33)]
    assert all(row["samples/s"] > 0 for row in rows) and rows[0]["speed-up vs p=0"] == 1.0
    assert (tmp_path / "patch_dropout_cost.md").read_text().count("| FashionCLIP-Tiny | 4 |") == 3
