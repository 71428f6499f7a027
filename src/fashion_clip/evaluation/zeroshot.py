"""Zero-shot category classification: images vs. prompted category names, a check that needs no captions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import open_clip
import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from torchmetrics.functional.classification import multiclass_accuracy

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.embedded_split import EmbeddedSplit, ImageRecord
from fashion_clip.evaluation.embedding import autocast
from fashion_clip.evaluation.prompt_templates import DEFAULT_TEMPLATES, check_templates

Tokenizer = Callable[[list[str]], torch.Tensor]
TOP_K = 5


def category_labels(images: Sequence[ImageRecord]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Sorted class names, the labelled images' rows and their class indices; no category means unlabelled."""
    classes = sorted({r.category for r in images if r.category})
    index = {name: i for i, name in enumerate(classes)}
    rows = [i for i, r in enumerate(images) if r.category]
    labels = [index[images[i].category] for i in rows]
    return classes, torch.tensor(rows, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


@torch.inference_mode()
def class_embeddings(
    model: open_clip.CLIP,
    tokenizer: Tokenizer,
    classes: list[str],
    templates: Sequence[str],
    device: torch.device,
) -> torch.Tensor:
    """(D, C) unit-norm mean of each class's unit-norm template embeddings, via open_clip's own builder."""
    with autocast(device):
        weights = build_zero_shot_classifier(
            model, tokenizer, classes, templates, device=device, use_tqdm=True
        )
    return weights.float()


def zeroshot(
    split: EmbeddedSplit,
    model: open_clip.CLIP,
    tokenizer: Tokenizer,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Top-1/top-5 accuracy of predicting each labelled image's category from prompted category names.

    `top5` is top-min(5, classes) accuracy. `images` counts the classified (labelled) images;
    images without a category are left out and counted in `unlabelled`. `model` is moved to `device`
    and put in eval mode, as `embed_catalogue` does.
    """
    templates = check_templates(templates)
    classes, rows, labels = category_labels(split.images)
    if len(classes) < 2:
        raise ConfigError(
            f"zeroshot needs at least 2 image categories, the split has {len(classes)} "
            f"({', '.join(classes) or 'none'}): the data has no `category` metadata to classify; add "
            f"'category' to each sample's .json or leave zeroshot out of the evaluation protocols"
        )
    device = torch.device(device)
    model.eval().to(device)
    weights = class_embeddings(model, tokenizer, classes, templates, device)
    logits = split.image_features[rows].to(device).float() @ weights
    labels = labels.to(device)
    accuracy = {
        name: multiclass_accuracy(logits, labels, len(classes), average="micro", top_k=k).item()
        for name, k in (("top1", 1), ("top5", min(TOP_K, len(classes))))
    }
    counts = {"classes": len(classes), "images": len(rows), "unlabelled": len(split.images) - len(rows)}
    return {**accuracy, **counts}
