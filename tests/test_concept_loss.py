"""`loss=concept`: the multi-positive concept term against a brute-force loop, targets, refresh schedule,
and gradients under the module's feature-cache accumulation."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo_group import free_port, gloo_group
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.knowledge.concepts import Concept
from fashion_clip.knowledge.fashionklip_kb import QUERIES, write_knowledge_base
from fashion_clip.knowledge.matching import ConceptMatcher
from fashion_clip.losses import InfoNCELoss, SigLipLoss
from fashion_clip.losses.concept import ConceptLoss, multi_positive_nce
from fashion_clip.models.cached_accumulation import accumulate_contrastive_gradients, split_batch
from fashion_clip.models.factory import create_clip

CONCEPTS = [
    Concept(0, "jacket", None, "a photo of jacket"),
    Concept(1, "hat", None, "a photo of hat"),
    Concept(2, "leather jacket", "jacket", "a photo of leather jacket"),
    Concept(3, "black leather jacket", "leather jacket", "a photo of black leather jacket"),
    Concept(4, "wool hat", "hat", "a photo of wool hat"),
]
CAPTIONS = [
    "Black leather jacket and a hat",
    "A wool hat.",
    "plain socks",
    "Leather jacket",
    "jacket, wool hat",
    "a black leather jacket",
]
DIM = 8
WORLD_SIZE = 2


class BankModel(nn.Module):
    """A text tower that maps prompt i to a fixed random unit vector, and counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.nn.functional.normalize(torch.randn(len(CONCEPTS), DIM), dim=1))
        self.calls = 0

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self.calls += 1
        return torch.nn.functional.normalize(self.table[tokens[:, 0]], dim=1)


def index_tokenizer(texts: list[str]) -> torch.Tensor:
    """Prompt i -> token [i], so BankModel's rows are the bank."""
    return torch.arange(len(texts))[:, None]


@pytest.fixture(scope="module")
def knowledge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kb")
    write_knowledge_base(CONCEPTS, root)
    return root


def concept_loss(knowledge_dir: Path, base=None, tokenizer=index_tokenizer, **options) -> ConceptLoss:
    """A ConceptLoss on the hand-written knowledge base."""
    return ConceptLoss(base or InfoNCELoss(), knowledge_dir, tokenizer, **options)


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
    image = torch.nn.functional.normalize(torch.randn(6, DIM, generator=generator), dim=1)
    bank = torch.nn.functional.normalize(torch.randn(5, DIM, generator=generator), dim=1)
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
def test_total_is_base_plus_weighted_terms_and_logs_each(knowledge_dir: Path, base_cls) -> None:
    torch.manual_seed(0)
    model = BankModel()
    loss = concept_loss(knowledge_dir, base_cls(), concept_weight=0.7, hypernym_weight=0.25)
    loss.observe_batch(model, {"caption": CAPTIONS}, step=0)
    image = torch.nn.functional.normalize(torch.randn(len(CAPTIONS), DIM), dim=1)
    text = torch.nn.functional.normalize(torch.randn(len(CAPTIONS), DIM), dim=1)
    scale, bias = torch.tensor(10.0), torch.tensor(-5.0)
    total = loss(image, text, scale, bias, distributed=False)

    matcher = ConceptMatcher(CONCEPTS)
    named = [set(matcher.match(c)[0]) for c in CAPTIONS]
    hypernyms = [set(matcher.match(c)[1]) for c in CAPTIONS]
    bank = model.encode_text(index_tokenizer([c.prompt for c in CONCEPTS])).detach()
    base = base_cls()(image, text, scale, bias, distributed=False).item()
    concept = brute_force_term(image, bank, 10.0, named)
    hypernym = brute_force_term(image, bank, 10.0, hypernyms)
    assert total.item() == pytest.approx(base + 0.7 * (concept + 0.25 * hypernym), rel=1e-5)
    terms = {k: v.item() for k, v in loss.last_terms.items()}
    assert terms == pytest.approx({"base": base, "concept": concept, "hypernym": hypernym}, rel=1e-5)
    assert loss.uses_logit_bias is base_cls.uses_logit_bias


@pytest.mark.parametrize("base_cls", [InfoNCELoss, SigLipLoss])
def test_product_positives_reach_the_base_loss(knowledge_dir: Path, base_cls) -> None:
    """With a product-aware base, the concept loss's base term is that base's multi-positive loss."""
    torch.manual_seed(1)
    model = BankModel()
    base = base_cls(positives="product", same_caption_positive=True)
    loss = concept_loss(knowledge_dir, base)
    loss.observe_batch(model, {"caption": CAPTIONS}, step=0)
    image = torch.nn.functional.normalize(torch.randn(len(CAPTIONS), DIM), dim=1)
    text = torch.nn.functional.normalize(torch.randn(len(CAPTIONS), DIM), dim=1)
    scale, bias = torch.tensor(10.0), torch.tensor(-5.0)
    keys = {"product": torch.arange(len(CAPTIONS)) // 2, "caption": torch.arange(len(CAPTIONS)) % 3}
    loss(image, text, scale, bias, distributed=False, **keys)
    expected = base(image, text, scale, bias, distributed=False, **keys)
    assert loss.last_terms["base"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert expected.item() != pytest.approx(base_cls()(image, text, scale, bias).item(), rel=1e-3)


def test_bank_is_refreshed_every_n_steps_and_fixed_in_between(knowledge_dir: Path) -> None:
    torch.manual_seed(0)
    model = BankModel()
    loss = concept_loss(knowledge_dir, refresh_every=3)
    refreshed = []
    for step in range(8):
        calls = model.calls
        loss.observe_batch(model, {"caption": CAPTIONS}, step)
        loss.observe_batch(model, {"caption": CAPTIONS[:2]}, step)  # e.g. validation at the same step
        if model.calls > calls:
            refreshed.append(step)
            bank = loss.bank.clone()
        assert torch.equal(loss.bank, bank)
        with torch.no_grad():
            model.table.add_(0.1)  # the text tower trains between steps
    assert refreshed == [0, 3, 6]
    assert not loss.bank.requires_grad
    assert "bank" not in loss.state_dict() and "prompt_tokens" not in loss.state_dict()


def test_loading_weights_makes_the_next_batch_refresh_the_bank(knowledge_dir: Path) -> None:
    model = BankModel()
    parent = nn.Module()
    parent.loss = concept_loss(knowledge_dir, refresh_every=100)
    parent.loss.observe_batch(model, {"caption": CAPTIONS}, 5)
    parent.load_state_dict(parent.state_dict())  # what Lightning does when it loads a checkpoint
    calls = model.calls
    parent.loss.observe_batch(model, {"caption": CAPTIONS}, 6)
    assert model.calls > calls and parent.loss.refreshed_at == 6


def test_a_bank_embedded_during_evaluation_trains(knowledge_dir: Path) -> None:
    model = BankModel()
    loss = concept_loss(knowledge_dir)
    with torch.inference_mode():  # Lightning's test loop, e.g. test_before_fit
        loss.observe_batch(model, {"caption": CAPTIONS}, 0)
    loss.observe_batch(model, {"caption": CAPTIONS}, 0)
    image = torch.randn(len(CAPTIONS), DIM, requires_grad=True)
    loss(image, torch.randn(len(CAPTIONS), DIM), torch.tensor(10.0)).backward()
    assert image.grad.abs().sum() > 0


def test_loss_refuses_a_batch_it_has_not_observed(knowledge_dir: Path) -> None:
    loss = concept_loss(knowledge_dir)
    loss.observe_batch(BankModel(), {"caption": CAPTIONS[:2]}, 0)
    with pytest.raises(RuntimeError, match="observe_batch"):
        loss(torch.randn(3, DIM), torch.randn(3, DIM), torch.tensor(1.0))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concept_weight": -1.0}, "concept_weight=-1.0"),
        ({"hypernym_weight": -0.5}, "hypernym_weight=-0.5"),
        ({"refresh_every": 0}, "refresh_every=0"),
    ],
)
def test_invalid_settings_name_the_key(knowledge_dir: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        concept_loss(knowledge_dir, **options)


def test_missing_knowledge_base_is_built_from_the_training_data(
    small_catalogue: Path, tmp_path: Path
) -> None:
    with pytest.raises(MissingInputError, match="knowledge.build"):
        concept_loss(tmp_path / "none")
    built = tmp_path / "built"
    loss = concept_loss(built, build_from=str(small_catalogue / "demo" / "train"))
    assert (built / QUERIES).is_file()
    assert loss.matcher.size == len(loss.prompt_tokens) > 0


def test_accumulated_gradients_equal_the_whole_batch(knowledge_dir: Path) -> None:
    torch.manual_seed(0)
    bundle = create_clip("FashionCLIP-Tiny")
    model = bundle.model
    size = model.visual.image_size
    batch = {
        "image": torch.randn(len(CAPTIONS), 3, *size),
        "text": bundle.tokenizer(CAPTIONS),
        "caption": CAPTIONS,
    }

    def gradients(accumulate: int) -> dict[str, torch.Tensor]:
        copied = copy.deepcopy(model)
        loss = concept_loss(knowledge_dir, tokenizer=bundle.tokenizer)
        loss.observe_batch(copied, batch, 0)

        def encode(image, text):
            return copied.encode_image(image, normalize=True), copied.encode_text(text, normalize=True)

        accumulate_contrastive_gradients(
            encode,
            loss,
            split_batch(batch["image"], batch["text"], accumulate),
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
    knowledge_dir: Path, captions: list[str], images: torch.Tensor, texts: torch.Tensor, ddp: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The concept loss's value and the towers' gradients for this process's share of the batch."""
    loss = concept_loss(knowledge_dir)
    torch.manual_seed(7)
    loss.observe_batch(BankModel(), {"caption": captions}, 0)
    towers = LinearTowers()
    model = DistributedDataParallel(towers) if ddp else towers
    value = loss(*model(images, texts))
    value.backward()
    return value.detach(), {name: p.grad.clone() for name, p in towers.named_parameters()}


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(99)
    return torch.randn(len(CAPTIONS), 12, generator=generator), torch.randn(
        len(CAPTIONS), 10, generator=generator
    )


def ddp_worker(rank: int, port: int, knowledge_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    with gloo_group(rank, WORLD_SIZE, port):
        captions = CAPTIONS[rank * 3 : rank * 3 + 3]  # rank 0: 2 images with concepts, rank 1: 3
        images, texts = (t.chunk(WORLD_SIZE)[rank] for t in global_batch())
        value, grads = towers_loss_and_grads(Path(knowledge_dir), captions, images, texts, ddp=True)
        dist.all_reduce(value)
        torch.save({"loss": value / WORLD_SIZE, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")


def test_ddp_loss_and_gradients_match_one_process(knowledge_dir: Path, tmp_path: Path) -> None:
    mp.spawn(ddp_worker, args=(free_port(), str(knowledge_dir), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    expected_loss, expected_grads = towers_loss_and_grads(knowledge_dir, CAPTIONS, *global_batch(), ddp=False)
    for rank in range(WORLD_SIZE):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], expected_loss, rtol=1e-5, atol=1e-5)
        for name, grad in expected_grads.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-5, msg=name)
