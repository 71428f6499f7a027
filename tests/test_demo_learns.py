"""The demo's promise: a few CPU minutes of training clearly beat the untrained model."""

from __future__ import annotations

import pytest

from fashion_clip.demo.catalogue import generate_demo_catalogue
from fashion_clip.training import train

pytestmark = pytest.mark.slow  # trains for a few CPU minutes

# Measured on 2 CPU cores with this schedule: mean test recall 0.047 untrained -> 0.67 trained (14x);
# `make demo`'s 8 epochs on the full catalogue reach ~0.79. The bar is the issue's 3x, plus an absolute
# floor well under the measured value so a model that only un-breaks its init does not pass.
MIN_GAIN = 3.0
MIN_AFTER = 0.4


@pytest.fixture(scope="module")
def learning_catalogue(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("learning")
    generate_demo_catalogue(root / "demo", products={"train": 300, "val": 60, "test": 60}, shard_size=200)
    return root


def test_short_training_at_least_triples_mean_recall(compose_train, learning_catalogue) -> None:
    cfg = compose_train(
        "experiment=demo", "trainer.max_epochs=4", "data.num_workers=1", data_dir=learning_catalogue
    )
    results = train(cfg)
    before = results["before"]["full/mean_recall"]
    after = results["after"]["full/mean_recall"]
    print(f"mean recall before {before:.4f} after {after:.4f} ({after / before:.1f}x)")
    assert after >= MIN_GAIN * before
    assert after >= MIN_AFTER
