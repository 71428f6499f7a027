"""Contrastive losses selectable from config via Hydra `_target_`."""

from __future__ import annotations

from fashion_clip.losses.base import ContrastiveLoss, TrainingLoss, rank_and_world_size
from fashion_clip.losses.infonce import InfoNCELoss
from fashion_clip.losses.siglip import SigLipLoss

__all__ = ["ContrastiveLoss", "InfoNCELoss", "SigLipLoss", "TrainingLoss", "rank_and_world_size"]
