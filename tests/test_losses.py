"""Losses must match brute-force references, and stay exact under 2-process DDP with gathered features."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from helpers.gloo_group import free_port, gloo_group
from hydra.utils import instantiate
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fashion_clip.errors import ConfigError
from fashion_clip.losses import ContrastiveLoss, InfoNCELoss, SigLipLoss

GLOBAL_BATCH = 8
WORLD_SIZE = 2


def infonce_reference(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mean of image->text and text->image cross-entropy, one explicit loop per row and column."""
    n = img.shape[0]
    total = img.new_zeros(())
    for i in range(n):
        row = torch.stack([scale * torch.dot(img[i], txt[j]) for j in range(n)])
        col = torch.stack([scale * torch.dot(txt[i], img[j]) for j in range(n)])
        total = total - (row[i] - torch.logsumexp(row, 0)) - (col[i] - torch.logsumexp(col, 0))
    return total / (2 * n)


def siglip_reference(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Negative log-sigmoid summed over every (image, text) pair, +1 on the diagonal, divided by batch."""
    n = img.shape[0]
    total = img.new_zeros(())
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            total = total - F.logsigmoid(z * (scale * torch.dot(img[i], txt[j]) + bias))
    return total / n


def multi_positive_infonce_reference(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, positive: list[list[bool]]
) -> torch.Tensor:
    """Each row's and column's -log softmax averaged over its positives, summed over both directions."""
    n = img.shape[0]
    total = img.new_zeros(())
    for i in range(n):
        row = torch.stack([scale * torch.dot(img[i], txt[j]) for j in range(n)])
        col = torch.stack([scale * torch.dot(txt[i], img[j]) for j in range(n)])
        row_pos = [j for j in range(n) if positive[i][j]]
        col_pos = [j for j in range(n) if positive[j][i]]
        total = total - sum(row[j] - torch.logsumexp(row, 0) for j in row_pos) / len(row_pos)
        total = total - sum(col[j] - torch.logsumexp(col, 0) for j in col_pos) / len(col_pos)
    return total / (2 * n)


def multi_positive_siglip_reference(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, positive: list[list[bool]]
) -> torch.Tensor:
    """Negative log-sigmoid over every pair, label +1 where the pair is positive, divided by batch."""
    n = img.shape[0]
    total = img.new_zeros(())
    for i in range(n):
        for j in range(n):
            z = 1.0 if positive[i][j] else -1.0
            total = total - F.logsigmoid(z * (scale * torch.dot(img[i], txt[j]) + bias))
    return total / n


PRODUCTS = [3, 7, 3, 5, 9, 7]
CAPTIONS = [21, 22, 21, 23, 22, 24]  # rows 1 and 4: different products, identical caption text


def positives_of(products: list[int], captions: list[int] | None, pairs: bool = False) -> list[list[bool]]:
    """Brute-force positive relation: same product (or same row for pairs), or identical caption."""
    n = len(products)
    return [
        [
            (i == j if pairs else products[i] == products[j])
            or (captions is not None and captions[i] == captions[j])
            for j in range(n)
        ]
        for i in range(n)
    ]


def random_inputs(seed: int, n: int = 6, dim: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    txt = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    scale = torch.tensor(7.3, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-2.1, dtype=torch.float64, requires_grad=True)
    return img, txt, scale, bias


def assert_all_close(actual: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> None:
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_infonce_matches_reference_values_and_gradients(seed: int) -> None:
    img, txt, scale, _ = random_inputs(seed)
    inputs = (img, txt, scale)
    loss = InfoNCELoss()(img, txt, scale)
    expected = infonce_reference(img, txt, scale)
    assert_all_close((loss,), (expected,))
    assert_all_close(torch.autograd.grad(loss, inputs), torch.autograd.grad(expected, inputs))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_siglip_matches_reference_values_and_gradients(seed: int) -> None:
    img, txt, scale, bias = random_inputs(seed)
    inputs = (img, txt, scale, bias)
    loss = SigLipLoss()(img, txt, scale, bias)
    expected = siglip_reference(img, txt, scale, bias)
    assert_all_close((loss,), (expected,))
    assert_all_close(torch.autograd.grad(loss, inputs), torch.autograd.grad(expected, inputs))


MULTI_POSITIVE_CASES = [
    ({"positives": "product"}, positives_of(PRODUCTS, None)),
    ({"positives": "product", "same_caption_positive": True}, positives_of(PRODUCTS, CAPTIONS)),
    ({"positives": "pair", "same_caption_positive": True}, positives_of(PRODUCTS, CAPTIONS, pairs=True)),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("options", "positive"), MULTI_POSITIVE_CASES)
@pytest.mark.parametrize("local_loss", [False, True])
def test_multi_positive_infonce_matches_reference(seed, options, positive, local_loss) -> None:
    img, txt, scale, _ = random_inputs(seed)
    inputs = (img, txt, scale)
    loss_fn = InfoNCELoss(local_loss=local_loss, **options)
    loss = loss_fn(img, txt, scale, product=torch.tensor(PRODUCTS), caption=torch.tensor(CAPTIONS))
    expected = multi_positive_infonce_reference(img, txt, scale, positive)
    assert_all_close((loss,), (expected,))
    assert_all_close(torch.autograd.grad(loss, inputs), torch.autograd.grad(expected, inputs))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("options", "positive"), MULTI_POSITIVE_CASES)
def test_multi_positive_siglip_matches_reference(seed, options, positive) -> None:
    img, txt, scale, bias = random_inputs(seed)
    inputs = (img, txt, scale, bias)
    loss_fn = SigLipLoss(**options)
    loss = loss_fn(img, txt, scale, bias, product=torch.tensor(PRODUCTS), caption=torch.tensor(CAPTIONS))
    expected = multi_positive_siglip_reference(img, txt, scale, bias, positive)
    assert_all_close((loss,), (expected,))
    assert_all_close(torch.autograd.grad(loss, inputs), torch.autograd.grad(expected, inputs))


@pytest.mark.parametrize("loss_cls", [InfoNCELoss, SigLipLoss])
def test_product_positives_with_distinct_products_equal_open_clip_pairs(loss_cls) -> None:
    img, txt, scale, bias = random_inputs(5)
    distinct = torch.arange(len(img)) * 11
    pairs = loss_cls()(img, txt, scale, bias)
    products = loss_cls(positives="product")(img, txt, scale, bias, product=distinct)
    assert_all_close((products,), (pairs,))


def test_same_product_pairs_are_no_longer_pushed_apart() -> None:
    """Two views of one product matching each other's caption lower the product loss, not the pair loss."""
    img, txt, scale, _ = random_inputs(6)
    products = torch.tensor([0, 0, 1, 2, 3, 4])
    swapped = txt.detach().clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    pair, product = InfoNCELoss(), InfoNCELoss(positives="product")
    assert pair(img, swapped, scale) > pair(img, txt, scale)
    torch.testing.assert_close(
        product(img, swapped, scale, product=products), product(img, txt, scale, product=products)
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"positives": "category"}, "loss.positives='category'"),
        ({"same_caption_positive": "yes"}, "same_caption"),
    ],
)
def test_unknown_positive_options_name_the_key(options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        InfoNCELoss(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"positives": "product"}, "product ids"), ({"same_caption_positive": True}, "caption keys")],
)
def test_multi_positive_without_batch_keys_is_a_clear_error(options, message) -> None:
    img, txt, scale, bias = random_inputs(7)
    with pytest.raises(ValueError, match=message):
        SigLipLoss(**options)(img, txt, scale, bias)


def test_infonce_ignores_logit_bias() -> None:
    img, txt, scale, bias = random_inputs(3)
    loss_fn = InfoNCELoss()
    assert_all_close((loss_fn(img, txt, scale, bias),), (loss_fn(img, txt, scale),))


def test_siglip_without_bias_raises_clear_error() -> None:
    img, txt, scale, _ = random_inputs(4)
    with pytest.raises(ValueError, match="logit_bias"):
        SigLipLoss()(img, txt, scale)


def test_hydra_instantiates_losses_with_bias_metadata() -> None:
    infonce = instantiate({"_target_": "fashion_clip.losses.InfoNCELoss", "local_loss": True})
    siglip = instantiate({"_target_": "fashion_clip.losses.SigLipLoss", "init_logit_bias": -5.0})
    assert isinstance(infonce, InfoNCELoss) and isinstance(siglip, SigLipLoss)
    assert infonce.local_loss and infonce.gather_with_grad
    assert (infonce.uses_logit_bias, infonce.init_logit_scale, infonce.init_logit_bias) == (False, None, None)
    assert (siglip.uses_logit_bias, siglip.init_logit_scale, siglip.init_logit_bias) == (
        True,
        math.log(10),
        -5.0,
    )


def test_open_clip_loss_is_built_once_per_topology() -> None:
    loss_fn = SigLipLoss()
    first = loss_fn.open_clip_loss()
    assert loss_fn.open_clip_loss() is first
    assert (first.rank, first.world_size) == (0, 1)


class TinyDualEncoder(nn.Module):
    """Two linear towers and open_clip-style scale/bias, enough to exercise DDP gradient averaging."""

    def __init__(self, with_bias: bool) -> None:
        super().__init__()
        torch.manual_seed(1234)
        self.image_tower = nn.Linear(12, 6)
        self.text_tower = nn.Linear(10, 6)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-2.0)) if with_bias else None

    def forward(
        self, images: torch.Tensor, texts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        image_features = F.normalize(self.image_tower(images), dim=-1)
        text_features = F.normalize(self.text_tower(texts), dim=-1)
        return image_features, text_features, self.logit_scale.exp(), self.logit_bias


GLOBAL_PRODUCTS = torch.tensor([4, 1, 4, 2, 1, 3, 4, 5])  # repeats within and across the two ranks
GLOBAL_CAPTIONS = torch.tensor([40, 10, 40, 20, 10, 30, 40, 20])  # rows 3 and 7: two products, one caption


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(99)
    return torch.randn(GLOBAL_BATCH, 12, generator=g), torch.randn(GLOBAL_BATCH, 10, generator=g)


def loss_and_grads(
    model: nn.Module,
    loss_fn: ContrastiveLoss,
    images: torch.Tensor,
    texts: torch.Tensor,
    **keys: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = loss_fn(*model(images, texts), **keys)
    loss.backward()
    module = model.module if isinstance(model, DistributedDataParallel) else model
    return loss.detach(), {name: p.grad.clone() for name, p in module.named_parameters()}


def ddp_worker(rank: int, port: int, loss_cls: type[ContrastiveLoss], options: dict, out_dir: str) -> None:
    torch.set_num_threads(1)
    loss_fn = loss_cls(**options)  # built before the process group exists, as Hydra does
    with gloo_group(rank, WORLD_SIZE, port):
        model = DistributedDataParallel(TinyDualEncoder(loss_cls.uses_logit_bias))
        images, texts = (t.chunk(WORLD_SIZE)[rank] for t in global_batch())
        keys = {
            "product": GLOBAL_PRODUCTS.chunk(WORLD_SIZE)[rank],
            "caption": GLOBAL_CAPTIONS.chunk(WORLD_SIZE)[rank],
        }
        loss, grads = loss_and_grads(model, loss_fn, images, texts, **keys)
        dist.all_reduce(loss)
        torch.save({"loss": loss / WORLD_SIZE, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.parametrize(
    ("loss_cls", "options"),
    [
        (InfoNCELoss, {}),
        (SigLipLoss, {}),
        (InfoNCELoss, {"positives": "product"}),
        (InfoNCELoss, {"positives": "product", "local_loss": True, "same_caption_positive": True}),
        (SigLipLoss, {"positives": "product"}),
        (SigLipLoss, {"positives": "pair", "same_caption_positive": True}),
    ],
)
@pytest.mark.slow
@pytest.mark.xdist_group("local_ports")  # a free port for other processes: see conftest.py
def test_ddp_loss_and_gradients_match_single_process(
    loss_cls: type[ContrastiveLoss], options: dict, tmp_path: Path
) -> None:
    mp.spawn(ddp_worker, args=(free_port(), loss_cls, options, str(tmp_path)), nprocs=WORLD_SIZE, join=True)

    expected_loss, expected_grads = loss_and_grads(
        TinyDualEncoder(loss_cls.uses_logit_bias),
        loss_cls(**options),
        *global_batch(),
        product=GLOBAL_PRODUCTS,
        caption=GLOBAL_CAPTIONS,
    )
    for rank in range(WORLD_SIZE):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], expected_loss, rtol=1e-5, atol=1e-5)
        assert result["grads"].keys() == expected_grads.keys()
        for name, grad in expected_grads.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-5, msg=name)
