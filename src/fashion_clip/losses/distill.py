"""Distillation from a frozen teacher: open_clip's DistillClipLoss, under DDP and feature-cache accumulation.

The loss is CLIP's InfoNCE plus `distill_weight` x the cross-entropy of the student's logits against the
teacher's softmax over the same global batch, image->text and text->image (open_clip_train's
`--distill-model` adds the two at weight 1). Student and teacher features are gathered across ranks as
open_clip's ClipLoss gathers them. A teacher's logit bias (SigLIP) is left out: a softmax ignores it.

The teacher is any model preset with its own weights, loaded by `deploy.model_loader.load_clip` (Hydra builds
it from `loss.teacher`). It is frozen: eval mode whatever the module's mode, no gradient, outside the
optimizer (which takes the student's parameters only) and outside the state dict, so student checkpoints
do not carry it and loading one leaves the teacher as it is. It is a submodule, so Lightning moves and casts
it with the student.

`batch_inputs` embeds the whole batch with the teacher once, without grad: with `module.accumulate=k` the k
micro-steps reuse those features beside the student's cached ones. The teacher sees the student's normalised
crop, re-normalised with its own mean and std and resized (bicubic, antialiased) to its own image size, and
the batch's captions tokenized by its own tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import DistillClipLoss
from torch import nn

from fashion_clip.losses.infonce import InfoNCELoss

TEACHER_PREFIX = "teacher."


def channel_stats(values: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Per-channel mean or std shaped (channels, 1, 1), to broadcast over a (batch, C, H, W) batch."""
    return torch.as_tensor(values, dtype=torch.float32).view(-1, 1, 1)


def image_size(size: int | Sequence[int]) -> tuple[int, int]:
    """open_clip's preprocess `size`, an int or (height, width), as (height, width)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def drop_teacher(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: dict) -> None:
    """State-dict hook: student checkpoints leave the frozen teacher out (it has its own weights file)."""
    for key in [key for key in state_dict if key.startswith(prefix + TEACHER_PREFIX)]:
        del state_dict[key]


def keep_teacher(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load pre-hook: a student checkpoint (without the teacher) loads strictly, the teacher as it is."""
    for key, value in module.teacher.state_dict(prefix=prefix + TEACHER_PREFIX).items():
        state_dict.setdefault(key, value)


class DistillLoss(InfoNCELoss):
    """InfoNCE + `distill_weight` x open_clip's distillation term against a frozen teacher.

    `teacher` is what `deploy.model_loader.load_clip` returns (its `bundle.model` and `bundle.tokenizer`
    are read). `terms` holds the last `contrastive` and `distill` values.
    """

    open_clip_class = DistillClipLoss

    def __init__(
        self,
        teacher: Any,
        distill_weight: float = 1.0,
        gather_with_grad: bool = True,
        local_loss: bool = False,
    ) -> None:
        super().__init__(gather_with_grad, local_loss)
        self.distill_weight = distill_weight
        self.teacher = teacher.bundle.model.eval().requires_grad_(False)
        self.tokenizer = teacher.bundle.tokenizer
        preprocess = open_clip.get_model_preprocess_cfg(self.teacher)
        self.teacher_size = image_size(preprocess["size"])
        self.register_buffer("teacher_mean", channel_stats(preprocess["mean"]), persistent=False)
        self.register_buffer("teacher_std", channel_stats(preprocess["std"]), persistent=False)
        self.register_buffer("student_mean", torch.empty(0), persistent=False)
        self.register_buffer("student_std", torch.empty(0), persistent=False)
        self.renormalize = False
        self.register_state_dict_post_hook(drop_teacher)
        self.register_load_state_dict_pre_hook(keep_teacher)

    def bind_student(self, image_mean: torch.Tensor, image_std: torch.Tensor) -> None:
        """The student's normalisation, to undo before the teacher's own (compared once, not per batch)."""
        self.student_mean = channel_stats(image_mean).to(self.teacher_mean)
        self.student_std = channel_stats(image_std).to(self.teacher_std)
        self.renormalize = not (
            torch.equal(self.student_mean, self.teacher_mean)
            and torch.equal(self.student_std, self.teacher_std)
        )

    def train(self, mode: bool = True) -> DistillLoss:
        """The teacher stays in eval mode (no dropout, patch dropout or norm statistics) while the student
        trains."""
        super().train(mode)
        self.teacher.eval()
        return self

    def teacher_images(self, images: torch.Tensor) -> torch.Tensor:
        """The student's normalised batch as the teacher's preprocessing would normalise and size it."""
        if not len(self.student_mean):
            raise RuntimeError("DistillLoss.bind_student was not called: ClipModule binds the student's")
        if self.renormalize:
            pixels = images * self.student_std + self.student_mean
            images = (pixels - self.teacher_mean) / self.teacher_std
        if tuple(images.shape[-2:]) != self.teacher_size:
            images = F.interpolate(images, size=self.teacher_size, mode="bicubic", antialias=True)
        return images

    def batch_inputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor | None]:
        """The teacher's unit-norm features of the whole batch, computed once here without grad."""
        captions = batch.get("caption")
        if captions is None:
            raise ValueError(
                "DistillLoss needs the batch's captions as text (batch['caption']) to tokenize them for "
                "the teacher; the project's data modules add them"
            )
        images = batch["image"]
        with torch.no_grad():
            image = self.teacher.encode_image(self.teacher_images(images), normalize=True)
            tokens = self.tokenizer(list(captions)).to(images.device)
            text = self.teacher.encode_text(tokens, normalize=True)
        return {"teacher_image": image, "teacher_text": text}

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        distributed: bool = True,
        teacher_image: torch.Tensor | None = None,
        teacher_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The student's loss given the teacher's features of the same rows (`batch_inputs`)."""
        if teacher_image is None or teacher_text is None:
            raise ValueError("DistillLoss needs the teacher's features: pass **loss.batch_inputs(batch)")
        contrastive, distill = self.open_clip_loss(distributed)(
            image_features,
            text_features,
            logit_scale,
            teacher_image,
            teacher_text,
            self.teacher.logit_scale.exp(),
        )
        self.terms = {"contrastive": contrastive.detach(), "distill": distill.detach()}
        return contrastive + self.distill_weight * distill
