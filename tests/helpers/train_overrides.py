"""Overrides that make a `train` run small enough for a test: the tiny model on CPU, in-process data."""

from __future__ import annotations

TINY_ON_CPU = (
    "model=tiny",
    "trainer=cpu",
    "data.num_workers=0",
    "data.batch_size=16",
    "data.eval_batch_size=32",
)

# one optimizer step of `tiny` on CPU, without the before/after scoring: a switch composes and trains
TINY_ONE_STEP = (*TINY_ON_CPU, "trainer.max_steps=1", "test_before_fit=false", "test_after_fit=false")

# a real preset at random init for one optimizer step: validation right after it writes the only
# checkpoint (weights only, no last.ckpt or snapshots), and the protocols are left to `evaluate`
REAL_ONE_STEP_ON_CPU = (
    "trainer=cpu",
    "trainer.precision=32-true",
    "trainer.max_steps=1",
    "trainer.val_check_interval=1",
    "+trainer.limit_val_batches=1",
    "model.pretrained=null",
    "data.num_workers=0",
    "data.batch_size=2",
    "data.eval_batch_size=8",
    "test_before_fit=false",
    "test_after_fit=false",
    "~callbacks.periodic_checkpoint",
    "callbacks.model_checkpoint.save_last=false",
    "+callbacks.model_checkpoint.save_weights_only=true",
)
