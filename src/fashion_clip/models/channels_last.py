"""Channels-last memory format for the image tower, where convolutions (stems, conv towers) run faster."""

from __future__ import annotations

import open_clip
import torch


def to_channels_last(model: open_clip.CLIP) -> open_clip.CLIP:
    """Convert the image tower's 4-d weights in place; other tensors are unaffected by the format.

    It only pays off when the image batches are channels-last as well
    (`images.to(memory_format=torch.channels_last)`), otherwise each convolution converts its input.
    """
    model.visual.to(memory_format=torch.channels_last)
    return model
