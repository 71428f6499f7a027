"""zeroshot: category accuracy from prompted class names, against known answers and a brute-force argmax."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.zeroshot import zeroshot
from fashion_clip.models.factory import create_clip
from fashion_clip.retrieval.embedding import EmbeddedSplit, ImageRecord

DIM = 12
TEMPLATES = ("a photo of {}.", "a product photo of {}.", "{}, a fashion item.")
CLASSES = ["bags", "dresses", "hats", "jackets", "shoes", "skirts", "tops"]


class TableTextModel(nn.Module):
    """Text encoder stand-in: each known prompt embeds to a fixed random row, so answers can be computed."""

    def __init__(self, texts: list[str], seed: int = 0) -> None:
        super().__init__()
        self.texts = texts
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(len(texts), DIM, generator=generator))

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Row index of each prompt, the 'tokens' encode_text looks up."""
        return torch.tensor([self.texts.index(t) for t in texts])

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """The prompts' rows, unit-norm when asked, as open_clip's encode_text."""
        rows = self.table[tokens]
        return F.normalize(rows, dim=-1) if normalize else rows


def table_model(classes: list[str] = CLASSES) -> TableTextModel:
    """A table model knowing every prompt the test's classes and templates produce."""
    return TableTextModel([t.format(c) for c in classes for t in TEMPLATES])


def reference_class_embeddings(
    encode: Callable[[list[str]], torch.Tensor], classes: list[str]
) -> torch.Tensor:
    """(C, D) unit-norm mean of unit-norm template embeddings, one class at a time."""
    rows = [F.normalize(encode([t.format(c) for t in TEMPLATES]), dim=-1).mean(dim=0) for c in classes]
    return F.normalize(torch.stack(rows), dim=-1)


def split_of(features: torch.Tensor, categories: list[str | None]) -> EmbeddedSplit:
    """Images with the given features and categories, no captions (zeroshot does not need them)."""
    images = [ImageRecord(f"k{i}", f"p{i}", c, "caption", "shard.tar") for i, c in enumerate(categories)]
    return EmbeddedSplit(features, images, torch.zeros(0, features.shape[1]), [])


def test_images_equal_to_their_class_embedding_are_all_right() -> None:
    model = table_model()
    classes = reference_class_embeddings(lambda texts: model.encode_text(model.tokenize(texts)), CLASSES)
    labels = [i % len(CLASSES) for i in range(20)]
    split = split_of(classes[labels], [CLASSES[i] for i in labels])
    result = zeroshot(split, model, model.tokenize, TEMPLATES)
    assert result == {"top1": 1.0, "top5": 1.0, "classes": 7, "images": 20, "unlabelled": 0}


def test_matches_brute_force_argmax_and_counts_unlabelled() -> None:
    model = table_model()
    classes = reference_class_embeddings(lambda texts: model.encode_text(model.tokenize(texts)), CLASSES)
    gen = torch.Generator().manual_seed(1)
    categories = [None if i % 5 == 0 else "" if i % 11 == 0 else CLASSES[i % len(CLASSES)] for i in range(60)]
    features = F.normalize(torch.randn(60, DIM, generator=gen), dim=-1)
    labelled = [(f.tolist(), CLASSES.index(c)) for f, c in zip(features, categories, strict=True) if c]
    top1 = top5 = 0
    for feature, label in labelled:
        scores = [sum(a * b for a, b in zip(feature, row, strict=True)) for row in classes.tolist()]
        ranked = sorted(range(len(CLASSES)), key=lambda c: -scores[c])
        top1 += ranked[0] == label
        top5 += label in ranked[:5]
    result = zeroshot(split_of(features, categories), model, model.tokenize, TEMPLATES)
    assert result["top1"] == pytest.approx(top1 / len(labelled))
    assert result["top5"] == pytest.approx(top5 / len(labelled))
    assert 0 < result["top1"] < result["top5"] < 1
    assert (result["images"], result["unlabelled"]) == (len(labelled), 60 - len(labelled))


def test_top5_is_top_all_with_fewer_than_five_classes() -> None:
    model = table_model(["bags", "shoes", "tops"])
    features = F.normalize(torch.randn(9, DIM, generator=torch.Generator().manual_seed(2)), dim=-1)
    result = zeroshot(split_of(features, ["bags", "shoes", "tops"] * 3), model, model.tokenize, TEMPLATES)
    assert (result["top5"], result["classes"]) == (1.0, 3)


def test_real_tiny_model_recognises_its_own_class_embeddings() -> None:
    bundle = create_clip("FashionCLIP-Tiny")
    bundle.model.eval()
    with torch.no_grad():
        classes = reference_class_embeddings(
            lambda texts: bundle.model.encode_text(bundle.tokenizer(texts), normalize=True), CLASSES
        )
    result = zeroshot(split_of(classes, CLASSES), bundle.model, bundle.tokenizer, TEMPLATES)
    assert (result["top1"], result["classes"], result["images"]) == (1.0, 7, 7)


@pytest.mark.parametrize("template", ["a photo of a dress", "{} and {}", "a photo of {name}", "a {"])
def test_template_without_exactly_one_slot_is_a_config_error(template: str) -> None:
    model = table_model()
    split = split_of(torch.eye(DIM)[:2], ["bags", "shoes"])
    with pytest.raises(ConfigError, match=r"zeroshot\.templates.*" + template.replace("{", r"\{")[:8]):
        zeroshot(split, model, model.tokenize, ("a photo of {}.", template))


def test_fewer_than_two_categories_says_there_is_no_category_metadata() -> None:
    model = table_model()
    split = split_of(torch.eye(DIM)[:3], ["bags", None, "bags"])
    with pytest.raises(ConfigError, match=r"has 1 .*no `category` metadata"):
        zeroshot(split, model, model.tokenize, TEMPLATES)
