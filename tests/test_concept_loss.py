"""`loss=concept`'s loss on tensors alone: the multi-positive concept term against a brute-force loop, the
weighted sum, and gradients under the module's feature-cache accumulation and DDP."""

from __future__ import annotations

import builtins
import copy
import functools
import io
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers.concepts import CAPTIONS, CONCEPTS, DIM, BankModel
from helpers.gloo_group import free_port, gloo_group
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fashion_clip.errors import ConfigError
from fashion_clip.knowledge.concepts import ConceptMatcher
from fashion_clip.losses import InfoNCELoss, SigLipLoss
from fashion_clip.losses.concept import HYPERNYM_TARGETS, NAMED_TARGETS, ConceptLoss, multi_positive_nce
from fashion_clip.models.cached_accumulation import accumulate_contrastive_gradients, split_batch
from fashion_clip.models.factory import create_clip

WORLD_SIZE = 2


def concept_targets(captions: list[str]) -> dict[str, torch.Tensor]:
    """The forward's target keywords for these captions, as the bank callback derives them."""
    named, hypernyms = ConceptMatcher(CONCEPTS).targets(captions)
    return {"named": named, "hypernyms": hypernyms}


def banked_loss(model: BankModel, base=None, **weights) -> ConceptLoss:
    """A ConceptLoss whose bank is `model`'s embedding of the concept prompts."""
    loss = ConceptLoss(base or InfoNCELoss(), **weights)
    with torch.no_grad():
        loss.set_bank(model.prompt_bank())
    return loss


def unit_rows(rows: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(rows, DIM, generator=generator), dim=1)


def brute_force_term(image: torch.Tensor, bank: torch.Tensor, scale: float, positives: list[set[int]]):
    """Per image with positives: mean over them of -log softmax over the whole bank; mean over images."""
    losses = []
    for i, chosen in enumerate(positives):
        if not chosen:
            continue
        logits = [scale * float(image[i] @ bank[c]) for c in range(len(bank))]
        log_norm = math.log(sum(math.exp(v) for v in logits))
        losses.append(sum(log_norm - logits[p] for p in chosen) / len(chosen))
    return sum(losses) / len(losses) if losses else 0.0


def test_matcher_separates_named_concepts_from_hypernyms() -> None:
    matcher = ConceptMatcher(CONCEPTS)
    assert matcher.match("Black leather jacket and a hat") == (frozenset({3, 1}), frozenset({2, 0}))
    assert matcher.match("jacket, wool hat") == (frozenset({0, 4}), frozenset({1}))
    assert matcher.match("plain socks") == (frozenset(), frozenset())
    named, hypernyms = matcher.targets(CAPTIONS[:2])
    assert named.tolist() == [[0, 1, 0, 1, 0], [0, 0, 0, 0, 1]]
    assert hypernyms.tolist() == [[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]]


def test_multi_positive_nce_matches_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    image = unit_rows(6, generator)
    bank = unit_rows(5, generator)
    positives = [{0, 3}, {4}, set(), {1, 2, 3}, {0}, set()]
    mask = torch.zeros(6, 5)
    for i, chosen in enumerate(positives):
        mask[i, list(chosen)] = 1.0
    value = multi_positive_nce(7.0 * image @ bank.T, mask)
    assert value.item() == pytest.approx(brute_force_term(image, bank, 7.0, positives), rel=1e-5)


def test_no_concept_in_the_batch_gives_zero_with_a_graph() -> None:
    logits = torch.randn(3, 5, requires_grad=True)
    value = multi_positive_nce(logits, torch.zeros(3, 5))
    value.backward()
    assert value.item() == 0.0 and torch.equal(logits.grad, torch.zeros(3, 5))


@pytest.mark.parametrize("base_cls", [InfoNCELoss, SigLipLoss])
def test_total_is_base_plus_weighted_terms_and_logs_each(base_cls) -> None:
    torch.manual_seed(0)
    model = BankModel()
    loss = banked_loss(model, base_cls(), concept_weight=0.7, hypernym_weight=0.25)
    image, text = unit_rows(len(CAPTIONS)), unit_rows(len(CAPTIONS))
    scale, bias = torch.tensor(10.0), torch.tensor(-5.0)
    total = loss(image, text, scale, bias, distributed=False, **concept_targets(CAPTIONS))

    matcher = ConceptMatcher(CONCEPTS)
    named = [set(matcher.match(c)[0]) for c in CAPTIONS]
    hypernyms = [set(matcher.match(c)[1]) for c in CAPTIONS]
    bank = model.prompt_bank().detach()
    base = base_cls()(image, text, scale, bias, distributed=False).item()
    concept = brute_force_term(image, bank, 10.0, named)
    hypernym = brute_force_term(image, bank, 10.0, hypernyms)
    assert total.item() == pytest.approx(base + 0.7 * (concept + 0.25 * hypernym), rel=1e-5)
    terms = {k: v.item() for k, v in loss.terms.items()}
    assert terms == pytest.approx({"base": base, "concept": concept, "hypernym": hypernym}, rel=1e-5)
    assert loss.uses_logit_bias is base_cls.uses_logit_bias


@pytest.mark.parametrize("base_cls", [InfoNCELoss, SigLipLoss])
def test_product_positives_reach_the_base_loss(base_cls) -> None:
    """With a product-aware base, the concept loss's base term is that base's multi-positive loss."""
    torch.manual_seed(1)
    base = base_cls(positives="product", same_caption_positive=True)
    loss = banked_loss(BankModel(), base)
    image, text = unit_rows(len(CAPTIONS)), unit_rows(len(CAPTIONS))
    scale, bias = torch.tensor(10.0), torch.tensor(-5.0)
    named, hypernyms = ConceptMatcher(CONCEPTS).targets(CAPTIONS)
    batch = {
        "product": torch.arange(len(CAPTIONS)) // 2,
        "caption_key": torch.arange(len(CAPTIONS)) % 3,
        NAMED_TARGETS: named,
        HYPERNYM_TARGETS: hypernyms,
    }
    loss(image, text, scale, bias, distributed=False, **loss.batch_inputs(batch))
    expected = base(image, text, scale, bias, distributed=False, **base.batch_inputs(batch))
    assert loss.terms["base"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert expected.item() != pytest.approx(base_cls()(image, text, scale, bias).item(), rel=1e-3)


def test_the_loss_reads_no_file_and_runs_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything the loss needs arrives as tensors: building, filling and calling it opens no file."""
    targets = concept_targets(CAPTIONS)
    image, text = unit_rows(len(CAPTIONS)), unit_rows(len(CAPTIONS))
    bank = unit_rows(len(CONCEPTS))

    def refuse(*args, **kwargs):
        raise AssertionError(f"the loss opened {args[0]!r}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    loss = ConceptLoss(InfoNCELoss(), prototype_weight=1.0)
    loss.set_bank(bank, bank.flip(0), torch.tensor([True, True, False, True, True]))
    value = loss(image, text, torch.tensor(10.0), **targets)
    assert torch.isfinite(value) and set(loss.terms) == {"base", "concept", "hypernym", "prototype"}
    assert [type(m) for m in loss.modules()] == [ConceptLoss, InfoNCELoss]


def test_loss_refuses_a_batch_without_its_targets() -> None:
    loss = ConceptLoss(InfoNCELoss())
    image = unit_rows(3)
    with pytest.raises(RuntimeError, match="ConceptBankRefresh"):
        loss(image, image, torch.tensor(1.0), **concept_targets(CAPTIONS[:3]))  # no bank yet
    loss.set_bank(unit_rows(len(CONCEPTS)))
    with pytest.raises(RuntimeError, match="ConceptBankRefresh"):
        loss(image, image, torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="targets for 2 rows and features for 3"):
        loss(image, image, torch.tensor(1.0), **concept_targets(CAPTIONS[:2]))


def test_the_prototype_term_needs_a_prototype_bank() -> None:
    with pytest.raises(ValueError, match="prototype_weight=0.5"):
        ConceptLoss(InfoNCELoss(), prototype_weight=0.5).set_bank(unit_rows(len(CONCEPTS)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concept_weight": -1.0}, "concept_weight=-1.0"),
        ({"hypernym_weight": -0.5}, "hypernym_weight=-0.5"),
        ({"prototype_weight": -2.0}, "prototype_weight=-2.0"),
    ],
)
def test_invalid_weights_name_the_key(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ConceptLoss(InfoNCELoss(), **options)


def test_accumulated_gradients_equal_the_whole_batch() -> None:
    torch.manual_seed(0)
    bundle = create_clip("FashionCLIP-Tiny")
    model = bundle.model
    size = model.visual.image_size
    images, texts = torch.randn(len(CAPTIONS), 3, *size), bundle.tokenizer(CAPTIONS)

    def gradients(accumulate: int) -> dict[str, torch.Tensor]:
        copied = copy.deepcopy(model)
        loss = ConceptLoss(InfoNCELoss())
        with torch.no_grad():
            loss.set_bank(copied.encode_text(bundle.tokenizer([c.prompt for c in CONCEPTS]), normalize=True))

        def encode(image, text):
            return copied.encode_image(image, normalize=True), copied.encode_text(text, normalize=True)

        accumulate_contrastive_gradients(
            encode,
            functools.partial(loss, **concept_targets(CAPTIONS)),
            split_batch(images, texts, accumulate),
            copied.logit_scale,
            None,
            lambda value: value.backward(),
        )
        return {n: p.grad for n, p in copied.named_parameters() if p.grad is not None}

    whole, accumulated = gradients(1), gradients(3)
    assert whole.keys() == accumulated.keys()
    assert whole["visual.proj"].abs().sum() > 0
    for name, grad in whole.items():
        assert torch.allclose(accumulated[name], grad, rtol=1e-4, atol=1e-5 * grad.abs().max().item()), name


class LinearTowers(nn.Module):
    """Two linear towers and a learnable scale: enough to check DDP's gradient averaging."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1234)
        self.image_tower = nn.Linear(12, DIM)
        self.text_tower = nn.Linear(10, DIM)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image = torch.nn.functional.normalize(self.image_tower(images), dim=-1)
        text = torch.nn.functional.normalize(self.text_tower(texts), dim=-1)
        return image, text, self.logit_scale.exp()


def towers_loss_and_grads(
    captions: list[str], images: torch.Tensor, texts: torch.Tensor, ddp: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The concept loss's value and the towers' gradients for this process's share of the batch."""
    torch.manual_seed(7)
    loss = banked_loss(BankModel())
    towers = LinearTowers()
    model = DistributedDataParallel(towers) if ddp else towers
    value = loss(*model(images, texts), **concept_targets(captions))
    value.backward()
    return value.detach(), {name: p.grad.clone() for name, p in towers.named_parameters()}


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(99)
    return torch.randn(len(CAPTIONS), 12, generator=generator), torch.randn(
        len(CAPTIONS), 10, generator=generator
    )


def ddp_worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    with gloo_group(rank, WORLD_SIZE, port):
        captions = CAPTIONS[rank * 3 : rank * 3 + 3]  # rank 0: 2 images with concepts, rank 1: 3
        images, texts = (t.chunk(WORLD_SIZE)[rank] for t in global_batch())
        value, grads = towers_loss_and_grads(captions, images, texts, ddp=True)
        dist.all_reduce(value)
        torch.save({"loss": value / WORLD_SIZE, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.slow
@pytest.mark.xdist_group("local_ports")  # a free port for other processes: see conftest.py
def test_ddp_loss_and_gradients_match_one_process(tmp_path: Path) -> None:
    mp.spawn(ddp_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    expected_loss, expected_grads = towers_loss_and_grads(CAPTIONS, *global_batch(), ddp=False)
    for rank in range(WORLD_SIZE):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], expected_loss, rtol=1e-5, atol=1e-5)
        for name, grad in expected_grads.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-5, msg=name)
