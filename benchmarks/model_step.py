"""A training step of the model alone (batch already in memory): its FLOPs and its speed, in-process.

Set against the data pipeline's rate, it says whether training waits for data. The model, loss and
optimizer come from our Hydra config, built as `python -m fashion_clip.train` builds them, so a row's
overrides (compile, unfused AdamW) change this step exactly as they change the trainer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from finetune_controls import CAPTION
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from mfu import DTYPES, counted_flops, synchronize
from omegaconf import DictConfig
from training_rows import TrainingRow

from fashion_clip.config import CONFIG_DIR
from fashion_clip.models.clip_module import ensure_logit_params
from fashion_clip.optim import param_groups


def image_side(model: torch.nn.Module) -> int:
    """The image tower's input side in pixels."""
    size = model.visual.image_size
    return size[0] if isinstance(size, tuple | list) else size


def row_config(row: TrainingRow, overrides: Sequence[str] = ()) -> DictConfig:
    """Our training config for the row (random init), with extra command-line overrides."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[f"model={row.preset}", "model.pretrained=null", f"loss={row.loss}", *overrides],
        )


def build_step(row: TrainingRow, overrides: Sequence[str] = ()) -> tuple[Callable[[], None], int]:
    """One optimizer step on a fixed random batch under the row's autocast, as Lightning's mixed precision
    runs it, and the model's image side."""
    _, step, side = build_training(row, overrides)
    return step, side


def build_training(
    row: TrainingRow, overrides: Sequence[str] = ()
) -> tuple[torch.nn.Module, Callable[[], None], int]:
    """`build_step`'s step and image side with the model it trains, for benchmarks that change a setting
    of the model between steps (patch_dropout_cost.py)."""
    cfg = row_config(row, overrides)
    torch.manual_seed(0)
    clip = instantiate(cfg.model)
    loss = instantiate(cfg.loss)
    ensure_logit_params(clip.model, loss)
    model = clip.model.to(row.device).train()
    side = image_side(model)
    batch = (
        torch.randn(row.batch_size, 3, side, side, device=row.device),
        clip.tokenizer([CAPTION] * row.batch_size).to(row.device),
    )
    # four views per product, as in a multi-view catalogue: what product-aware losses compare
    keys = {"product": torch.arange(row.batch_size, device=row.device) // 4}
    keys["caption"] = keys["product"]
    optimizer = instantiate(cfg.optimizer)(param_groups(model.named_parameters()))

    def step() -> None:
        enabled = row.precision != "fp32"
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(row.device, dtype=DTYPES[row.precision], enabled=enabled):
            image = model.encode_image(batch[0], normalize=True)
            text = model.encode_text(batch[1], normalize=True)
            value = loss(image, text, model.logit_scale.exp(), model.logit_bias, distributed=False, **keys)
        value.backward()
        optimizer.step()

    return model, step, side


def timed_step(step: Callable[[], None], device: str) -> float:
    """Seconds one call of `step` takes, queued GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def measure_model_step(row: TrainingRow, steps: int) -> dict[str, Any]:
    """FLOPs per sample of one counted step (it also warms up), then seconds per step over `steps` more."""
    step, side = build_step(row)
    flops = counted_flops(step)
    seconds = sum(timed_step(step, row.device) for _ in range(steps)) / steps
    return {
        "flops_per_sample": flops / row.batch_size,
        "step_s": seconds,
        "samples_per_s": row.batch_size / seconds,
        "image_px": side,
    }
