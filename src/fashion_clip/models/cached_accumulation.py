"""Gradient accumulation that keeps the contrastive batch: open_clip's `--accum-freq` feature-cache scheme.

Plain accumulation runs k independent micro-batches, so each contrastive loss sees 1/k of the negatives.
Here every micro-batch's features are first computed without activations; then each micro-batch is
encoded again with grad, put back in its place among the cached features, and the loss over the whole
batch is backpropagated. Each feature receives its gradient exactly once, so the summed gradients are
those of the single big batch, at the activation memory of one micro-batch (plus the batch's features).

Unlike open_clip, the logit scale and bias take 1/k of their gradient per micro-step: they enter all k
losses, and open_clip's sum gives them k times the big-batch gradient. Scaling (rather than detaching
them in k-1 steps) keeps every parameter in every backward, which DDP without
`find_unused_parameters` requires.

The equality assumes the forward pass is deterministic (no dropout, drop-path or patch dropout):
with a stochastic layer the recomputed features differ from the cached ones, as in open_clip.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Encode = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
ContrastiveObjective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
MicroBatch = tuple[torch.Tensor, torch.Tensor]


def split_batch(image: torch.Tensor, text: torch.Tensor, parts: int) -> list[MicroBatch]:
    """Consecutive micro-batches, so their features concatenated in order are the full batch's."""
    return list(zip(image.chunk(parts), text.chunk(parts), strict=True))


def scale_gradient(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    """The same value with its gradient multiplied by `factor` (the value is exact: no rounding added)."""
    frozen = tensor.detach()
    return frozen + (tensor - frozen) * factor


def cache_features(
    encode: Encode, micro_batches: list[MicroBatch]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every micro-batch's features without activations: the negatives that each micro-step scores against."""
    with torch.no_grad():
        features = [encode(image, text) for image, text in micro_batches]
    return [image for image, _ in features], [text for _, text in features]


def substitute(cached: list[torch.Tensor], index: int, fresh: torch.Tensor) -> torch.Tensor:
    """The full batch's features with micro-batch `index` replaced by its differentiable recomputation."""
    return torch.cat([*cached[:index], fresh, *cached[index + 1 :]])


def accumulate_contrastive_gradients(
    encode: Encode,
    objective: ContrastiveObjective,
    micro_batches: list[MicroBatch],
    log_logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None,
    backward: Callable[[torch.Tensor], None],
) -> torch.Tensor:
    """Leave the big batch's gradients in `.grad` (one `backward` per micro-batch); return its loss.

    `objective(image_features, text_features, logit_scale, logit_bias)` is the contrastive loss (with any
    cross-rank gather it does: under DDP that runs once per micro-step, k gathers of the full batch per
    step instead of one); `log_logit_scale` is the model's parameter, exponentiated here per micro-step.
    """
    cached_images, cached_texts = cache_features(encode, micro_batches)
    share = 1.0 / len(micro_batches)
    for index, (image, text) in enumerate(micro_batches):
        image_features, text_features = encode(image, text)
        loss = objective(
            substitute(cached_images, index, image_features),
            substitute(cached_texts, index, text_features),
            scale_gradient(log_logit_scale, share).exp(),
            None if logit_bias is None else scale_gradient(logit_bias, share),
        )
        backward(loss)
    return loss.detach()
