"""Contrastive losses selectable from config via Hydra `_target_`."""

from __future__ import annotations

from fashion_clip.losses.base import ContrastiveLoss, rank_and_world_size
from fashion_clip.losses.infonce import InfoNCELoss
from fashion_clip.losses.siglip import SigLipLoss

__all__ = ["ContrastiveLoss", "InfoNCELoss", "SigLipLoss", "rank_and_world_size"]
