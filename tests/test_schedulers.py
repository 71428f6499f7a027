"""`scheduler=const` and `scheduler=const_cooldown` against open_clip_train's own schedules, step by step."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers.train_overrides import TINY_ON_CPU
from open_clip_train.scheduler import const_lr, const_lr_cooldown

from fashion_clip.errors import ConfigError
from fashion_clip.optim import const, const_cooldown
from fashion_clip.preflight import check_numbers, check_scheduler
from fashion_clip.training import train

BASE_LR = 3e-4


def two_group_optimizer() -> torch.optim.Optimizer:
    """AdamW with the decay and no-decay groups `param_groups` builds."""
    decay, no_decay = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    return torch.optim.AdamW([{"params": [decay]}, {"params": [no_decay], "weight_decay": 0.0}], lr=BASE_LR)


def scheduled_lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[list[float]]:
    """Each group's LR at each optimizer step, as ClipModule steps the scheduler (after every step)."""
    lrs = []
    for _ in range(steps):
        lrs.append([group["lr"] for group in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def reference_lrs(adjuster_factory, **kwargs) -> list[float]:
    """open_clip_train's LR at each of its `steps` (its training loop calls the adjuster before each)."""
    adjuster = adjuster_factory(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=BASE_LR), **kwargs)
    return [adjuster(step) for step in range(kwargs["steps"])]


@pytest.mark.parametrize(("warmup", "total"), [(0, 1), (3, 20), (10, 20), (1, 7)])
def test_const_matches_open_clip_at_every_step(warmup: int, total: int) -> None:
    reference = reference_lrs(const_lr, base_lr=BASE_LR, warmup_length=warmup, steps=total)
    ours = scheduled_lrs(const(two_group_optimizer(), total_steps=total, warmup_steps=warmup), total)
    assert ours == [pytest.approx([lr, lr], rel=1e-12) for lr in reference]


def test_const_caps_warmup_at_half_the_run_and_runs_without_an_end() -> None:
    capped = scheduled_lrs(const(two_group_optimizer(), total_steps=8, warmup_steps=100), 8)
    assert [lrs[0] for lrs in capped] == pytest.approx([BASE_LR * k / 4 for k in (1, 2, 3, 4, 4, 4, 4, 4)])
    endless = scheduled_lrs(const(two_group_optimizer(), total_steps=float("inf"), warmup_steps=2), 4)
    assert [lrs[0] for lrs in endless] == pytest.approx([BASE_LR / 2, BASE_LR, BASE_LR, BASE_LR])


@pytest.mark.parametrize(
    ("steps_per_epoch", "epochs", "epochs_cooldown", "warmup", "power", "end"),
    [
        (7, 5, 2, 3, 1.0, 0.0),  # linear to zero over the last 2 of 5 epochs
        (7, 5, 1, 3, 2.0, 1e-5),  # quadratic to an end LR
        (4, 3, 3, 2, 0.5, 5e-5),  # the whole run cools down after warmup (open_clip jumps into it)
        (10, 4, 1, 15, 1.0, 0.0),  # warmup longer than the constant phase runs into the cooldown
        (1, 6, 2, 0, 3.0, 0.0),  # one step per epoch, no warmup
    ],
)
def test_const_cooldown_matches_open_clip_at_every_step(
    steps_per_epoch: int, epochs: int, epochs_cooldown: int, warmup: int, power: float, end: float
) -> None:
    total = steps_per_epoch * epochs
    reference = reference_lrs(
        const_lr_cooldown,
        base_lr=BASE_LR,
        warmup_length=warmup,
        steps=total,
        cooldown_steps=steps_per_epoch * epochs_cooldown,  # open_clip: num_batches * epochs_cooldown
        cooldown_power=power,
        cooldown_end_lr=end,
    )
    scheduler = const_cooldown(
        two_group_optimizer(),
        total_steps=total,
        max_epochs=epochs,
        warmup_steps=warmup,
        epochs_cooldown=epochs_cooldown,
        cooldown_power=power,
        lr_cooldown_end=end,
    )
    assert scheduled_lrs(scheduler, total) == [pytest.approx([lr, lr], rel=1e-12) for lr in reference]
    # the step after the last one (ClipModule steps the scheduler after every step) holds the end LR
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(end, abs=1e-15)


class StepLrs(L.Callback):
    """The optimizer's LR before each optimizer step, and the epoch length Lightning counted."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.steps_per_epoch = 0

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self.steps_per_epoch = int(trainer.num_training_batches)


@pytest.mark.slow
def test_const_cooldown_in_a_training_run_counts_epochs_of_the_trainer(
    compose_train, small_catalogue
) -> None:
    """The preset reads trainer.max_epochs and Lightning's step count: the cooldown is the last epoch."""
    cfg = compose_train(
        *TINY_ON_CPU,
        "scheduler=const_cooldown",
        "scheduler.warmup_steps=1",
        "scheduler.cooldown_power=2",
        "scheduler.lr_cooldown_end=1e-6",
        f"optimizer.lr={BASE_LR}",
        "trainer.max_epochs=3",
        "+trainer.limit_train_batches=3",
        "+trainer.limit_val_batches=1",
        "data.batch_size=8",
        "test_before_fit=false",
        "test_after_fit=false",
        data_dir=small_catalogue,
    )
    recorder = StepLrs()
    train(cfg, extra_callbacks=[recorder])
    per_epoch = recorder.steps_per_epoch
    assert per_epoch == 3 and len(recorder.lrs) == 3 * per_epoch
    reference = reference_lrs(
        const_lr_cooldown,
        base_lr=BASE_LR,
        warmup_length=1,
        steps=3 * per_epoch,
        cooldown_steps=per_epoch,
        cooldown_power=2.0,
        cooldown_end_lr=1e-6,
    )
    assert recorder.lrs == pytest.approx(reference, rel=1e-9)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("trainer.max_steps=50",), "trainer.max_steps=50"),
        (("trainer.max_epochs=-1",), "trainer.max_epochs=-1"),
    ],
)
def test_const_cooldown_refuses_a_run_not_bounded_by_epochs(compose_train, overrides, message) -> None:
    cfg = compose_train("scheduler=const_cooldown", *overrides)
    with pytest.raises(ConfigError, match=message):
        check_scheduler(cfg)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("scheduler.epochs_cooldown=0", "scheduler.epochs_cooldown=0"),
        ("scheduler.cooldown_power=0", "scheduler.cooldown_power=0"),
        ("scheduler.lr_cooldown_end=-1e-5", "scheduler.lr_cooldown_end=-1e-05"),
    ],
)
def test_const_cooldown_numbers_are_checked(compose_train, override: str, key: str) -> None:
    cfg = compose_train("scheduler=const_cooldown", override)
    with pytest.raises(ConfigError, match=key):
        check_numbers(cfg)


@pytest.mark.parametrize("scheduler", ["const", "const_cooldown", "warmup_cosine"])
def test_default_run_passes_the_scheduler_checks(compose_train, scheduler: str) -> None:
    cfg = compose_train(f"scheduler={scheduler}")
    check_numbers(cfg)
    check_scheduler(cfg)
