"""Several ranks without resampling: every rank's epoch has the same length, one it can always reach."""

from __future__ import annotations

import itertools
import random
import subprocess
from pathlib import Path

import pytest
import torch
from helpers.python_subprocess import run_python
from helpers.shard_samples import jpeg_bytes, shard_sample, write_split

from fashion_clip.data.datamodule import epoch_length
from fashion_clip.errors import ConfigError


def full_batches(sizes: list[int], batch: int) -> int:
    """What one worker yields from its shards: whole batches only."""
    return sum(sizes) // batch


def fewest_batches_of_any_rank(sizes: list[int], world: int, workers: int, batch: int) -> int:
    """Brute force over every shard order: the fewest batches any rank's workers yield in any epoch."""
    fewest = None
    for order in itertools.permutations(sizes):
        for rank in range(world):
            mine = list(order[rank::world])
            count = sum(full_batches(mine[w::workers], batch) for w in range(workers))
            fewest = count if fewest is None else min(fewest, count)
    return fewest


@pytest.mark.parametrize("seed", range(6))
def test_epoch_length_is_reached_by_every_rank_in_every_shuffle(seed: int) -> None:
    rng = random.Random(seed)
    sizes = [rng.randint(1, 30) for _ in range(rng.randint(2, 6))]
    world, workers, batch = 2, rng.randint(1, 2), rng.randint(1, 5)
    try:
        length = epoch_length(sizes, world, workers, batch)
    except ConfigError:
        return
    assert 1 <= length <= fewest_batches_of_any_rank(sizes, world, workers, batch)


def test_an_average_share_would_overrun_the_smaller_rank() -> None:
    """Shards of 16, 16, 16 and 2 samples on two ranks: the rank with the small shard makes 4 batches of 4."""
    sizes = [16, 16, 16, 2]
    assert fewest_batches_of_any_rank(sizes, 2, 1, 4) == 4
    assert epoch_length(sizes, 2, 1, 4) == 4
    assert -(-(sum(sizes) / 2 - 3) // 4) == 6  # the old samples/world estimate: one rank would wait forever


@pytest.mark.parametrize(
    ("sizes", "workers", "batch", "message"),
    [([10], 1, 4, "1 shards for 2 ranks"), ([3, 3, 30], 1, 8, "as few as 3 samples")],
)
def test_splits_too_small_for_every_rank_are_refused(sizes, workers, batch, message) -> None:
    with pytest.raises(ConfigError, match=message):
        epoch_length(sizes, 2, workers, batch)


def write_uneven_split(directory: Path) -> Path:
    """50 samples in shards of 16, 16, 16 and 2, each its own product."""
    samples = [
        shard_sample(i, jpeg_bytes((5 * i, 90, 160)), f"p{i}", captions=[f"dress number {i}"])
        for i in range(50)
    ]
    return write_split(directory, samples, shard_size=16, name="uneven")


def ddp_train(split: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """Two gloo ranks through the real CLI, training two epochs on `split`."""
    return run_python(
        "-m",
        "fashion_clip.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "trainer.precision=32-true",
        "data.num_workers=0",
        "data.batch_size=4",
        "data.eval_batch_size=16",
        f"data.train={split}",
        f"data.val={split}",
        f"data.test={split}",
        "test_before_fit=false",
        "test_after_fit=false",
        f"hydra.run.dir={run_dir}",
        *overrides,
    )


@pytest.mark.parametrize("batching", ["random", "category_hard"])
@pytest.mark.slow
@pytest.mark.xdist_group("local_ports")  # a free port for other processes: see conftest.py
def test_two_ranks_on_uneven_shards_finish_every_epoch(tmp_path: Path, batching: str) -> None:
    """Also with composed batches and product positives: ids gathered across ranks in a real DDP run."""
    split = write_uneven_split(tmp_path / "split")
    overrides = [f"data.batching={batching}"] + (["loss.positives=product"] if batching != "random" else [])
    done = ddp_train(split, tmp_path / "run", *overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MEMBER: 2/2" in done.stderr + done.stdout
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * 4  # two epochs of the 4 batches the smaller rank can make
    # recall is gathered by the metric itself: logged as synced, so Lightning has nothing to warn about
    assert "sync_dist=True" not in done.stderr + done.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("local_ports")  # a free port for other processes: see conftest.py
def test_two_ranks_without_a_manifest_are_refused(tmp_path: Path) -> None:
    split = write_uneven_split(tmp_path / "split")
    done = ddp_train(split, tmp_path / "run", f"data.train={split}/uneven-*.tar")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "has no manifest" in done.stderr and "Traceback" not in done.stderr
