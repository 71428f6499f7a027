"""Damaged shards under DDP: a short rank re-reads its epoch's start, too much damage stops every rank,
and SIGTERM ends every rank. A hang fails these tests (the whole process group is killed at the timeout)."""

from __future__ import annotations

import io
import itertools
import logging
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from helpers.shard_samples import jpeg_bytes, shard_sample, write_split

from fashion_clip.data.datamodule import WebDatasetDataModule, epoch_length
from fashion_clip.data.samples import MIN_SKIPPED, DamagedShardsError, too_damaged

SHARD_SIZE = 24
BAD_SHARD = "damaged-000003.tar"
GOOD_LEFT = 2  # samples of the bad shard that still decode
BATCH = 4
RANK_BATCHES = epoch_length([SHARD_SIZE] * 4, world=2, workers=1, batch_size=BATCH)
TIMEOUT_S = 240


def corrupt_images(shard: Path, keep: int) -> None:
    """Truncate the image of every sample but the first `keep`, as bit rot or a cut upload would; the
    manifest still counts them, so the loader only finds out when it decodes."""
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar.getmembers()]
    images = [info.name for info, _ in members if info.name.endswith(".jpg")]
    damaged = set(images[keep:])
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            data = data[:40] if info.name in damaged else data
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def damaged_split(tmp_path: Path) -> Path:
    """Four shards of 24 samples written by the shard writer; all but 2 images of the last one truncated."""
    samples = [
        shard_sample(i, jpeg_bytes((2 * i, 90, 160)), f"p{i}", captions=[f"dress number {i}"])
        for i in range(4 * SHARD_SIZE)
    ]
    split = write_split(tmp_path / "split", samples, shard_size=SHARD_SIZE, name="damaged")
    corrupt_images(split / BAD_SHARD, keep=GOOD_LEFT)
    return split


def rank_loader(split: Path, clip, rank: int, **options):
    """Rank `rank` of two's train loader, built in this process as that rank would build it."""
    module = WebDatasetDataModule(
        train=str(split),
        batch_size=BATCH,
        num_workers=0,
        shuffle_buffer=8,
        train_transform=clip.train_transform,
        val_transform=clip.val_transform,
        tokenizer=clip.tokenizer,
        seed=3,
        **options,
    )
    module._rank, module._world_size = (lambda: rank), (lambda: 2)
    return module.train_dataloader()


def holds_bad_shard(loader, epoch: int) -> bool:
    """Whether the loader's rank reads the damaged shard in `epoch`."""
    return any(url.endswith(BAD_SHARD) for url in loader.dataset.rank_shards(epoch))


def test_skip_limit_waits_for_enough_skipped_samples() -> None:
    assert not too_damaged(skipped=1, read=10, max_fraction=0.05)
    assert not too_damaged(skipped=MIN_SKIPPED - 1, read=MIN_SKIPPED, max_fraction=0.05)
    assert too_damaged(skipped=MIN_SKIPPED, read=MIN_SKIPPED * 10, max_fraction=0.05)
    assert not too_damaged(skipped=MIN_SKIPPED, read=MIN_SKIPPED * 20, max_fraction=0.05)
    assert not too_damaged(skipped=10**6, read=10**6, max_fraction=None)


def test_short_rank_repeats_its_epochs_start_exactly(damaged_split: Path, tiny_clip, caplog) -> None:
    """The rank with the damaged shard makes up its epoch with the epoch's first batches, identical (same
    samples, augmentations and captions); the other rank reads its shards once."""
    loaders = [rank_loader(damaged_split, tiny_clip, rank, max_skip_fraction=None) for rank in (0, 1)]
    short = next(loader for loader in loaders if holds_bad_shard(loader, 0))
    full = next(loader for loader in loaders if loader is not short)
    with caplog.at_level(logging.WARNING):
        epoch = list(short)
    assert len(epoch) == len(short) == len(full) == RANK_BATCHES
    first_pass = (SHARD_SIZE + GOOD_LEFT) // BATCH
    for repeated, original in zip(epoch[first_pass:], epoch[: RANK_BATCHES - first_pass], strict=True):
        assert repeated["caption"] == original["caption"]
        assert torch.equal(repeated["image"], original["image"])
        assert torch.equal(repeated["product"], original["product"])
    products = [p for batch in epoch[:first_pass] for p in batch["product"].tolist()]
    assert len(set(products)) == len(products)  # the first read holds each sample once
    assert short.reread_samples == (RANK_BATCHES - first_pass) * BATCH
    assert f"repeats the epoch's first {short.reread_samples} samples" in caplog.text
    assert len(list(full)) == RANK_BATCHES and full.reread_samples == 0


def test_resume_inside_the_reread_continues_it(damaged_split: Path, tiny_clip) -> None:
    """A position saved while the short rank re-reads its epoch resumes to the same batches."""
    rank = next(r for r in (0, 1) if holds_bad_shard(rank_loader(damaged_split, tiny_clip, r), 0))
    reference = list(rank_loader(damaged_split, tiny_clip, rank, max_skip_fraction=None))
    interrupted = rank_loader(damaged_split, tiny_clip, rank, max_skip_fraction=None)
    seen = list(itertools.islice(interrupted, RANK_BATCHES - 2))
    state = interrupted.state_dict()
    assert state["passes"] == 1
    resumed = rank_loader(damaged_split, tiny_clip, rank, max_skip_fraction=None)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert [b["caption"] for b in seen + rest] == [b["caption"] for b in reference]


def test_too_many_undecodable_samples_stop_one_process_naming_the_shard(damaged_split, tiny_clip) -> None:
    module = WebDatasetDataModule(
        train=str(damaged_split),
        batch_size=BATCH,
        num_workers=0,
        train_transform=tiny_clip.train_transform,
        val_transform=tiny_clip.val_transform,
        tokenizer=tiny_clip.tokenizer,
    )
    named = rf"data.max_skip_fraction=0.05\. Worst shards: \S*{BAD_SHARD} \(20 skipped\)"
    with pytest.raises(DamagedShardsError, match=named):
        list(module.train_dataloader())


def ddp_command(split: Path, run_dir: Path, *overrides: str, epochs: int = 2) -> list[str]:
    """Two gloo ranks through the real CLI, training `epochs` epochs on `split`."""
    return [
        sys.executable,
        "-m",
        "fashion_clip.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "data.num_workers=0",
        f"data.batch_size={BATCH}",
        "data.eval_batch_size=32",
        f"data.train={split}",
        f"data.val={split}",
        f"data.test={split}",
        "test_before_fit=false",
        "test_after_fit=false",
        f"hydra.run.dir={run_dir}",
        f"trainer.max_epochs={epochs}",
        *overrides,
    ]


def start(command: list[str], log: Path) -> subprocess.Popen:
    """Rank 0 in a process group of its own (rank 1, its child, joins it), its output in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def process_table() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, parent pid, process group) of every process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:  # the process ended while the table was read
            continue
        table[int(stat.parent.name)] = (state, int(parent), int(group))
    return table


def group_alive(group: int) -> bool:
    """Whether a process of the group still runs (a zombie has ended)."""
    return any(g == group and state != "Z" for state, _, g in process_table().values())


def finish(process: subprocess.Popen, log: Path, timeout: float = TIMEOUT_S) -> tuple[int, str]:
    """Rank 0's exit code and the output once every rank has exited; a rank still alive at the timeout
    fails the test after its process group is killed, so a hang never blocks the suite."""
    deadline = time.monotonic() + timeout
    while (process.poll() is None or group_alive(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if process.poll() is None or group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"ranks still running after {timeout} s, killed:\n{log.read_text()[-4000:]}")
    return process.returncode, log.read_text()


def rank_pids(rank0: subprocess.Popen) -> dict[int, int]:
    """Both ranks' pids: rank 1 is the process Lightning started from rank 0."""
    children = [pid for pid, (state, parent, _) in process_table().items() if parent == rank0.pid]
    return {0: rank0.pid, 1: next(pid for pid in children if b"fashion_clip.train" in cmdline(pid))}


def cmdline(pid: int) -> bytes:
    """A process's command line (empty once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
def test_two_ranks_finish_every_epoch_when_one_shard_is_mostly_undecodable(damaged_split, tmp_path) -> None:
    log = tmp_path / "ddp.log"
    overrides = ("data.max_skip_fraction=null",)
    code, output = finish(start(ddp_command(damaged_split, tmp_path / "run", *overrides), log), log)
    assert code == 0, output[-4000:]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * RANK_BATCHES
    assert "re-reads its shards from the start of the epoch" in output


@pytest.mark.slow
def test_too_much_damage_stops_both_ranks_with_the_shard_named(damaged_split, tmp_path) -> None:
    log = tmp_path / "ddp.log"
    code, output = finish(start(ddp_command(damaged_split, tmp_path / "run"), log), log)
    assert code != 0
    assert "error: data.train:" in output and f"{BAD_SHARD} (" in output, output[-4000:]
    assert "data.max_skip_fraction=0.05" in output
    assert "Connection closed by peer" not in output  # both ranks stopped on the message, none crashed


@pytest.mark.parametrize("ranks", [(0,), (1,), (0, 1)], ids=["rank0", "rank1", "both"])
@pytest.mark.slow
def test_sigterm_ends_every_rank(damaged_split, tmp_path, ranks) -> None:
    """Rank 0 (`kill`, `timeout`), rank 1 alone, or both (as a cluster scheduler sends it). With Lightning's
    own handler the run exited 0, as if training had finished, or both ranks waited forever (rank 1 or both
    signalled: its broadcast inside the handler falls out of step with the other rank's collectives)."""
    log = tmp_path / "ddp.log"
    overrides = ("data.max_skip_fraction=null", "callbacks.periodic_checkpoint.every_n_train_steps=2")
    process = start(ddp_command(damaged_split, tmp_path / "run", *overrides, epochs=1000), log)
    training = tmp_path / "run" / "checkpoints" / "step000002.ckpt"
    deadline = time.monotonic() + TIMEOUT_S
    while not training.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert training.exists(), log.read_text()[-4000:]
    pids = rank_pids(process)
    for rank in ranks:
        os.kill(pids[rank], signal.SIGTERM)
    code, output = finish(process, log, timeout=120)
    assert code != 0, output[-4000:]
