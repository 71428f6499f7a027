"""Zero-shot category classification: images vs. prompted category names, a check that needs no captions;
and the prompt templates that turn a category or attribute value into sentences for the text tower."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from string import Formatter

import open_clip
import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from torchmetrics.functional.classification import multiclass_accuracy

from fashion_clip.errors import ConfigError
from fashion_clip.retrieval.embedding import EmbeddedSplit, ImageRecord, autocast

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of {}.",
    "a product photo of {}.",
    "a catalogue photo of {}.",
    "a studio photo of {} on a plain background.",
    "an online shop photo of {}.",
    "{}, a fashion item.",
)


def format_fields(template: str, key: str = "zeroshot.templates") -> list[str]:
    """Names of the replacement fields in a template ('' for `{}`); literal `{{`/`}}` are not fields."""
    try:
        return [field for _, field, _, _ in Formatter().parse(template) if field is not None]
    except ValueError as e:
        raise ConfigError(f"{key}: {template!r} is not a valid format string: {e}") from e


def check_templates(templates: Sequence[str], key: str = "zeroshot.templates") -> tuple[str, ...]:
    """Fail before any text is encoded when a template would not mention the value exactly once;
    `key` is the config key the message names."""
    if isinstance(templates, str) or len(templates) == 0:
        raise ConfigError(f"{key} must be a non-empty list of strings, got {templates!r}")
    for template in templates:
        if not isinstance(template, str) or format_fields(template, key) != [""]:
            raise ConfigError(
                f"{key}: template {template!r} must contain exactly one '{{}}' where the "
                f"value goes (and no other '{{...}}' field), e.g. 'a photo of {{}}.'"
            )
    return tuple(templates)


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
