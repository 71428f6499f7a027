"""Visual concept prototypes (`loss.prototype_weight`): the mean embedding of each concept's example
images, checked against embedding those images independently, and the term against a brute-force loop."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from fashion_clip.data.catalogue_reader import ShardCatalogue
from fashion_clip.errors import ConfigError, UserError
from fashion_clip.knowledge.bank_refresh import ConceptBankRefresh
from fashion_clip.knowledge.build import build_knowledge_base
from fashion_clip.knowledge.fashionklip_kb import read_knowledge_base, write_knowledge_base
from fashion_clip.losses import InfoNCELoss
from fashion_clip.losses.concept import ConceptLoss
from fashion_clip.models.factory import create_clip


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return create_clip("FashionCLIP-Tiny")


@pytest.fixture(scope="module")
def train_shards(small_catalogue: Path) -> str:
    return str(small_catalogue / "demo" / "train")


@pytest.fixture(scope="module")
def knowledge(train_shards: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kb")
    build_knowledge_base(train_shards, out, min_count=2, images_per_concept=3)
    return out


def prototype_loss(
    knowledge: Path, tiny_clip, train_shards: str, **weights
) -> tuple[ConceptLoss, ConceptBankRefresh]:
    """A concept loss and its bank callback, the knowledge base and its example images read."""
    loss = ConceptLoss(InfoNCELoss(), **weights)
    bank = ConceptBankRefresh(knowledge, tiny_clip.tokenizer, prototype_data=train_shards)
    bank.load(loss.uses_prototypes)
    return loss, bank


def reference_prototypes(knowledge: Path, tiny_clip, train_shards: str) -> dict[int, torch.Tensor]:
    """Row -> prototype, from the example images read and embedded here, one image at a time."""
    items = {
        item["key"]: item["image"] for item in ShardCatalogue(train_shards, tiny_clip.val_transform, "train")
    }
    model = tiny_clip.model.eval()
    prototypes = {}
    with torch.no_grad():
        for row, concept in enumerate(read_knowledge_base(knowledge).concepts):
            features = [model.encode_image(items[k][None], normalize=True)[0] for k in concept.image_keys]
            prototypes[row] = torch.nn.functional.normalize(torch.stack(features).mean(dim=0), dim=0)
    return prototypes


def test_prototypes_are_mean_embeddings_of_each_concepts_example_images(knowledge, tiny_clip, train_shards):
    loss, bank = prototype_loss(knowledge, tiny_clip, train_shards, prototype_weight=1.0)
    tiny_clip.model.train()
    bank.refresh(tiny_clip.model, loss, step=0)
    assert tiny_clip.model.training, "refresh must restore the model's mode"
    expected = reference_prototypes(knowledge, tiny_clip, train_shards)
    assert len(expected) == len(loss.prototype_bank) and loss.has_prototype.all()
    for row, prototype in expected.items():
        torch.testing.assert_close(loss.prototype_bank[row], prototype, atol=1e-5, rtol=1e-4)


def test_prototype_term_matches_brute_force_and_weights_add_up(knowledge, tiny_clip, train_shards):
    concepts = read_knowledge_base(knowledge).concepts
    captions = [
        f"a {concepts[-1].phrase} and a {concepts[0].phrase}",
        "nothing known here",
        concepts[1].phrase,
    ]
    loss, bank = prototype_loss(knowledge, tiny_clip, train_shards, prototype_weight=2.0, concept_weight=0.5)
    bank.refresh(tiny_clip.model, loss, step=0)
    generator = torch.Generator().manual_seed(1)
    dim = loss.prototype_bank.shape[1]
    image = torch.nn.functional.normalize(torch.randn(3, dim, generator=generator), dim=1)
    text = torch.nn.functional.normalize(torch.randn(3, dim, generator=generator), dim=1)
    targets = bank.targets(captions, torch.device("cpu"))
    total = loss(image, text, torch.tensor(5.0), None, distributed=False, **loss.batch_inputs(targets))

    per_image = []
    for i, caption in enumerate(captions):
        named = sorted(bank.matcher.match(caption)[0])
        if not named:
            continue
        logits = [5.0 * float(image[i] @ p) for p in loss.prototype_bank]
        log_norm = math.log(sum(math.exp(v) for v in logits))
        per_image.append(sum(log_norm - logits[c] for c in named) / len(named))
    terms = {k: v.item() for k, v in loss.terms.items()}
    assert terms["prototype"] == pytest.approx(sum(per_image) / len(per_image), rel=1e-5)
    expected = terms["base"] + 0.5 * (terms["concept"] + 0.5 * terms["hypernym"] + 2.0 * terms["prototype"])
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_prototypes_need_their_images(knowledge, tiny_clip, train_shards, tmp_path):
    with pytest.raises(ConfigError, match="callbacks.concept_bank.prototype_data"):
        ConceptBankRefresh(knowledge, tiny_clip.tokenizer).load(uses_prototypes=True)
    without_images = [dataclasses.replace(c, image_keys=()) for c in read_knowledge_base(knowledge).concepts]
    write_knowledge_base(without_images, tmp_path)
    (tmp_path / "concept_images.npz").unlink(missing_ok=True)
    with pytest.raises(UserError, match="no concept images"):
        prototype_loss(tmp_path, tiny_clip, train_shards, prototype_weight=1.0)


def test_missing_example_images_are_skipped_and_counted(knowledge, tiny_clip, train_shards, tmp_path):
    concepts = read_knowledge_base(knowledge).concepts
    first = dataclasses.replace(concepts[0], image_keys=("no-such-key", *concepts[0].image_keys))
    write_knowledge_base([first, *concepts[1:]], tmp_path)
    _, bank = prototype_loss(tmp_path, tiny_clip, train_shards, prototype_weight=1.0)
    assert bank.prototypes.skipped == 1
    assert len(bank.prototypes.members[0]) == len(concepts[0].image_keys)
