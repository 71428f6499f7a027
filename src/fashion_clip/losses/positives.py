"""Which (image, text) pairs of a global batch count as positives: the product-aware part of every loss.

`pair` is CLIP's diagonal. `product` makes every image and caption of the same product a positive, so the
other views of a product (Fashion-Gen has up to six sharing one caption) are not pushed apart as false
negatives. `same_caption=True` adds pairs whose captions are the same text: the text tower cannot tell
those products apart, so ranking one above the other is noise.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from fashion_clip.errors import ConfigError

POSITIVES = ("pair", "product")


def check_positives(positives: str, same_caption_positive: bool) -> None:
    """Reject an unknown mode when the loss is built, before any data or weights are read."""
    if positives not in POSITIVES:
        raise ConfigError(
            f"loss.positives={positives!r} is not one of {', '.join(POSITIVES)}: 'pair' treats only an "
            "image's own caption as positive, 'product' every image and caption of the same product"
        )
    if not isinstance(same_caption_positive, bool):
        raise ConfigError(f"loss.same_caption_positive={same_caption_positive!r} must be true or false")


def gather_ids(ids: torch.Tensor, world_size: int) -> torch.Tensor:
    """Every rank's ids in rank order, aligned with open_clip's gathered features (ids need no gradient)."""
    if world_size == 1:
        return ids
    gathered = [torch.empty_like(ids) for _ in range(world_size)]
    dist.all_gather(gathered, ids.contiguous())
    return torch.cat(gathered)


def positive_mask(
    row_ids: torch.Tensor,
    col_ids: torch.Tensor,
    row_captions: torch.Tensor | None = None,
    col_captions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Float (rows, cols) mask: 1 where the row's and column's ids (or caption keys, when given) match."""
    mask = row_ids[:, None] == col_ids[None, :]
    if row_captions is not None and col_captions is not None:
        mask |= row_captions[:, None] == col_captions[None, :]
    return mask.float()


def gathered_mask(
    keys: tuple[torch.Tensor, torch.Tensor | None], world_size: int, rows_are_global: bool
) -> torch.Tensor:
    """Mask of this rank's rows (or the global batch's) against the global batch's columns."""
    ids, captions = keys
    all_ids = gather_ids(ids, world_size)
    all_captions = None if captions is None else gather_ids(captions, world_size)
    if rows_are_global:
        return positive_mask(all_ids, all_ids, all_captions, all_captions)
    return positive_mask(ids, all_ids, captions, all_captions)
