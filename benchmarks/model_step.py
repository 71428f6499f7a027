"""A training step of the model alone (batch already in memory): its FLOPs and its speed, in-process.

Set against the data pipeline's rate, it says whether training waits for data.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from finetune_controls import CAPTION
from mfu import DTYPES, counted_flops, synchronize
from training_rows import TrainingRow

from fashion_clip.losses import InfoNCELoss, SigLipLoss
from fashion_clip.models.clip_module import ensure_logit_params
from fashion_clip.models.factory import create_clip
from fashion_clip.optim.param_groups import param_groups


def image_side(model: torch.nn.Module) -> int:
    """The image tower's input side in pixels."""
    size = model.visual.image_size
    return size[0] if isinstance(size, tuple | list) else size


def measure_model_step(row: TrainingRow, steps: int) -> dict[str, Any]:
    """FLOPs per sample of one counted step (it also warms up), then seconds per step over `steps` more."""
    torch.manual_seed(0)
    clip = create_clip(row.model)
    loss = SigLipLoss() if row.loss == "siglip" else InfoNCELoss()
    ensure_logit_params(clip.model, loss)
    model = clip.model.to(row.device).train()
    side = image_side(model)
    batch = (
        torch.randn(row.batch_size, 3, side, side, device=row.device),
        clip.tokenizer([CAPTION] * row.batch_size).to(row.device),
    )
    optimizer = torch.optim.AdamW(param_groups(model.named_parameters()), lr=5e-5, weight_decay=0.1)

    def step() -> None:
        """One optimizer step under the row's autocast, as Lightning's mixed precision runs it."""
        enabled = row.precision != "fp32"
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(row.device, dtype=DTYPES[row.precision], enabled=enabled):
            image = model.encode_image(batch[0], normalize=True)
            text = model.encode_text(batch[1], normalize=True)
            value = loss(image, text, model.logit_scale.exp(), model.logit_bias, distributed=False)
        value.backward()
        optimizer.step()

    flops = counted_flops(step)
    synchronize(row.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(row.device)
    seconds = (time.perf_counter() - start) / steps
    return {
        "flops_per_sample": flops / row.batch_size,
        "step_s": seconds,
        "samples_per_s": row.batch_size / seconds,
        "image_px": side,
    }
