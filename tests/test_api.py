"""The Python API: configs composed as the CLI's, runs in their run directory, a model to embed with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers.tiny_model import TINY, save_tiny_weights
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from fashion_clip import api
from fashion_clip.errors import ConfigError
from fashion_clip.models.factory import create_clip
from fashion_clip.records import read_results, training_loss

RUN_NAME = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d")


def test_compose_applies_overrides_and_places_the_run_under_the_root(tmp_path: Path) -> None:
    cfg = api.compose(
        "train", ["loss=siglip", "trainer.max_epochs=3", "data.batch_size=8"], root_dir=tmp_path
    )
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.loss._target_.rsplit(".", 1)[-1]) == (
        3,
        8,
        "SigLipLoss",
    )
    run_dir = Path(cfg.paths.output_dir)
    assert run_dir.parent == tmp_path / "outputs" / "train" / "runs" and RUN_NAME.fullmatch(run_dir.name)
    assert cfg.hydra.runtime.output_dir == str(run_dir) and cfg.hydra.runtime.choices.loss == "siglip"
    assert (cfg.paths.root_dir, cfg.data.train) == (str(tmp_path), str(tmp_path / "data" / "demo" / "train"))
    assert not run_dir.exists()  # composing writes nothing; the run does


def test_configs_composed_in_turn_keep_their_own_paths(tmp_path: Path) -> None:
    first = api.compose("train", ["experiment=demo"], root_dir=tmp_path / "a")
    second = api.compose("evaluate", [], root_dir=tmp_path / "b")
    assert Path(first.paths.output_dir).parent == tmp_path / "a" / "outputs" / "demo" / "runs"
    assert Path(second.paths.output_dir).parent == tmp_path / "b" / "outputs" / "evaluate" / "runs"
    assert first.trainer.max_epochs == 8 and "trainer" not in second


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.nosuch=1", r"\+trainer\.nosuch=1"),  # Hydra's hint: append with +
        ("model=vitb99", r"vitb99(.|\n)*vitb32"),  # the available options
        ("model==", r"model=="),
    ],
)
def test_a_bad_override_is_a_config_error_naming_it(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as err:
        api.compose("train", [override])
    assert f"overrides ['{override}']" in str(err.value)


def test_run_gives_the_task_the_cli_job_config_and_saves_hydra_files(tmp_path: Path) -> None:
    cfg = api.compose("train", ["loss=siglip"], root_dir=tmp_path)
    api.compose("evaluate", [])  # a later composition must not leak into this run

    def task(job: DictConfig) -> tuple[bool, str, str]:
        return "hydra" in job, HydraConfig.get().runtime.choices.loss, job.paths.output_dir

    run = api.run(cfg, task)
    assert run.result == (False, "siglip", cfg.paths.output_dir) and run.run_dir == Path(cfg.paths.output_dir)
    saved = run.run_dir / ".hydra"
    assert OmegaConf.load(saved / "overrides.yaml") == ["loss=siglip"]
    assert OmegaConf.load(saved / "config.yaml").trainer.max_epochs == cfg.trainer.max_epochs
    assert training_loss(str(run.run_dir / "checkpoints" / "best.ckpt")) == "siglip"


def test_run_refuses_a_config_without_its_hydra_node(tmp_path: Path) -> None:
    cfg = api.compose("train", [], root_dir=tmp_path)
    del cfg.hydra
    with pytest.raises(ConfigError, match=r"api\.compose"):
        api.train(cfg)


def test_evaluate_writes_its_results_in_the_run_directory(small_catalogue: Path, tmp_path: Path) -> None:
    overrides = ["protocol=[full]", "evaluation.num_workers=0", f"paths.data_dir={small_catalogue}"]
    run = api.evaluate(api.compose("evaluate", overrides, root_dir=tmp_path))
    assert run.run_dir.parent == tmp_path / "outputs" / "evaluate" / "runs"
    assert read_results(run.run_dir / "evaluation_results.json") == run.result
    assert run.result[0].metrics["products"] == 16


def test_load_model_embeds_with_the_checkpoint_weights(tmp_path: Path) -> None:
    ckpt = save_tiny_weights(tmp_path / "weights.pt", seed=3)
    bundle = api.load_model("tiny", ckpt_path=ckpt)
    reference = create_clip(TINY)
    reference.model.load_state_dict(torch.load(ckpt, weights_only=True))
    reference.model.eval()
    image = bundle.val_transform(Image.new("RGB", (80, 60), (200, 30, 40))).unsqueeze(0)
    tokens = bundle.tokenizer(["a red wool dress", "black leather boots"])
    with torch.inference_mode():
        features = (
            bundle.model.encode_image(image, normalize=True),
            bundle.model.encode_text(tokens, normalize=True),
        )
        expected = reference.model.encode_image(image, normalize=True), reference.model.encode_text(tokens)
    dim = reference.model.text_projection.shape[1]
    assert [tuple(f.shape) for f in features] == [(1, dim), (2, dim)]
    assert torch.allclose(features[0].norm(dim=-1), torch.ones(1)) and not bundle.model.training
    assert torch.allclose(features[0], expected[0], atol=1e-6)
    assert torch.allclose(features[1], torch.nn.functional.normalize(expected[1], dim=-1), atol=1e-6)
