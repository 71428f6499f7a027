"""Overrides that make a `tune` search small enough for a test: the tiny model, two batches, one epoch."""

from __future__ import annotations

from helpers.train_overrides import TINY_ON_CPU

SEARCH = (
    *TINY_ON_CPU,
    "hparams_search=optuna",
    "hparams_search.params.batch_size=null",
    "hparams_search.params.warmup_steps=null",
    "hparams_search.params.weight_decay=null",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "test_before_fit=false",
    "test_after_fit=false",
)
