"""WiSE-FT: interpolation arithmetic, its end points equal plain evaluations, and bad alphas."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.run import evaluate
from fashion_clip.evaluation.wise import check_alphas, interpolate, wise
from fashion_clip.models.factory import create_clip


def test_interpolate_mixes_floats_and_keeps_finetuned_only_keys() -> None:
    zero = {"w": torch.zeros(2), "steps": torch.tensor([3])}
    tuned = {"w": torch.ones(2) * 4, "steps": torch.tensor([9]), "logit_bias": torch.tensor([-10.0])}
    mixed = interpolate(zero, tuned, 0.25)
    assert torch.equal(mixed["w"], torch.ones(2))
    assert torch.equal(mixed["steps"], torch.tensor([9]))
    assert torch.equal(mixed["logit_bias"], torch.tensor([-10.0]))


@pytest.mark.parametrize("alphas", [[], [0.5, 1.5], [-0.1]])
def test_alphas_outside_unit_interval_are_refused(alphas: list[float]) -> None:
    with pytest.raises(ConfigError, match="alphas"):
        check_alphas(alphas)


@pytest.mark.slow
def test_end_points_equal_the_zero_shot_and_finetuned_evaluations(
    small_catalogue: Path, compose_train, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    base, tuned = tmp_path / "base.pt", tmp_path / "tuned.pt"
    torch.save(create_clip("FashionCLIP-Tiny").model.state_dict(), base)
    torch.save(create_clip("FashionCLIP-Tiny").model.state_dict(), tuned)
    common = ("protocol=[full]", "evaluation.num_workers=0", f"model.pretrained={base}")
    records = wise(
        compose_train(
            *common, f"ckpt_path={tuned}", "alphas=[0,0.5,1]", config_name="wise", data_dir=small_catalogue
        )
    )
    assert [r.stage for r in records] == ["base", "wise-0.50", "finetuned"]
    zero_shot = evaluate(compose_train(*common, config_name="evaluate", data_dir=small_catalogue))[0]
    finetuned = evaluate(
        compose_train(*common, f"ckpt_path={tuned}", config_name="evaluate", data_dir=small_catalogue)
    )[0]
    assert records[0].metrics == zero_shot.metrics
    assert records[2].metrics == finetuned.metrics
    assert records[1].metrics != records[0].metrics
    assert (tmp_path / "run" / "comparison.csv").is_file()  # compose_train's output_dir
