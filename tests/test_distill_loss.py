"""`loss=distill`: open_clip's DistillClipLoss against a frozen teacher, checked against open_clip and a
brute-force loop, under feature-cache accumulation and 2-process DDP, and in a real training run."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from helpers.gloo_group import free_port, gloo_group
from helpers.lightning_trainer import fit_one_step, save_lightning
from helpers.tiny_model import TINY, random_tiny, training_batch
from helpers.train_overrides import TINY_ON_CPU
from hydra.utils import instantiate
from open_clip.loss import DistillClipLoss
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fashion_clip.deploy.model_loader import LoadedModel
from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.losses import InfoNCELoss
from fashion_clip.losses.distill import DistillLoss
from fashion_clip.models.checkpoint import read_checkpoint
from fashion_clip.models.clip_module import ClipModule
from fashion_clip.models.factory import create_clip
from fashion_clip.preflight import preflight
from fashion_clip.training import train

BATCH = 8
WORLD_SIZE = 2
CAPTIONS = [f"a {colour} {item}" for colour in ("red", "black") for item in ("dress", "coat", "hat", "boot")]


def tiny_teacher(seed: int = 3) -> LoadedModel:
    """A random tiny model as `load_clip` hands it to the loss."""
    torch.manual_seed(seed)
    return LoadedModel(create_clip(TINY), {})


def distill_reference(
    student: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    teacher: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    weight: float,
) -> torch.Tensor:
    """InfoNCE + weight x each row's and column's cross-entropy against the teacher's softmax, by loops."""
    (img, txt, scale), (t_img, t_txt, t_scale) = student, teacher
    n = len(img)
    contrastive, distill = img.new_zeros(()), img.new_zeros(())
    for i in range(n):
        for a, b, t_a, t_b in ((img, txt, t_img, t_txt), (txt, img, t_txt, t_img)):
            row = torch.stack([scale * torch.dot(a[i], b[j]) for j in range(n)])
            t_row = torch.stack([t_scale * torch.dot(t_a[i], t_b[j]) for j in range(n)])
            log_p = row - torch.logsumexp(row, 0)
            contrastive = contrastive - log_p[i]
            distill = distill - sum(torch.softmax(t_row, 0)[j] * log_p[j] for j in range(n))
    return (contrastive + weight * distill) / (2 * n)


def unit_features(seed: int, n: int = 6, dim: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=-1) for _ in "it")


@pytest.fixture(scope="module")
def teacher() -> LoadedModel:
    return tiny_teacher()


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_open_clip_and_brute_force(teacher, seed: int) -> None:
    loss = DistillLoss(teacher, distill_weight=0.7)
    img, txt = (t.requires_grad_() for t in unit_features(seed))
    t_img, t_txt = unit_features(seed + 10)
    scale = torch.tensor(7.3, dtype=torch.float64, requires_grad=True)
    t_scale = loss.teacher.logit_scale.exp()
    value = loss(img, txt, scale, teacher_image=t_img, teacher_text=t_txt)
    contrastive, distill = DistillClipLoss()(img, txt, scale, t_img, t_txt, t_scale)
    expected = distill_reference((img, txt, scale), (t_img, t_txt, t_scale), 0.7)
    torch.testing.assert_close(value, contrastive + 0.7 * distill, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(value, expected, rtol=1e-9, atol=1e-12)
    assert loss.terms["distill"] == pytest.approx(distill.item()) and distill > 0.1
    grads = torch.autograd.grad(value, (img, txt, scale))
    expected_grads = torch.autograd.grad(expected, (img, txt, scale))
    for actual, reference in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(actual, reference, rtol=1e-9, atol=1e-12)


def test_teacher_gets_its_own_normalisation_size_and_tokens(teacher) -> None:
    """A student at 48 px with [-1, 1] normalisation: the teacher sees its 64 px OpenAI-normalised view."""
    loss = DistillLoss(teacher)
    pixels = torch.randint(0, 256, (3, 3, 48, 48), dtype=torch.uint8).float() / 255
    loss.bind_student(torch.full((3,), 0.5), torch.full((3,), 0.5))
    seen = loss.teacher_images((pixels - 0.5) / 0.5)
    expected = F.interpolate(
        (pixels - loss.teacher_mean) / loss.teacher_std, size=(64, 64), mode="bicubic", antialias=True
    )
    torch.testing.assert_close(seen, expected, rtol=1e-5, atol=1e-5)
    loss.bind_student(loss.teacher_mean.flatten(), loss.teacher_std.flatten())
    same = torch.randn(2, 3, 64, 64)
    assert loss.teacher_images(same) is same  # the same preprocessing: the student's batch as it is
    inputs = loss.batch_inputs(
        {"image": same, "text": torch.zeros(2, 5, dtype=torch.long), "caption": CAPTIONS[:2]}
    )
    with torch.no_grad():
        own_tokens = teacher.bundle.model.encode_text(teacher.bundle.tokenizer(CAPTIONS[:2]), normalize=True)
    torch.testing.assert_close(inputs["teacher_text"], own_tokens)
    assert not inputs["teacher_image"].requires_grad


class RecordStep(L.Callback):
    """The gradients the optimizer applies and the logged loss terms."""

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self.gradients = {n: p.grad.clone() for n, p in pl_module.named_parameters() if p.grad is not None}
        self.optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}


def sgd_step(teacher: LoadedModel, batch: dict, **module_options) -> tuple[ClipModule, RecordStep, int]:
    """One SGD step of a random tiny student distilled from `teacher`; also how often the teacher ran."""
    module = ClipModule(
        random_tiny(0),
        DistillLoss(teacher),
        optimizer=functools.partial(torch.optim.SGD, lr=1.0),
        **module_options,
    )
    calls = []
    hook = module.loss.teacher.visual.register_forward_hook(lambda *args: calls.append(1))
    record = RecordStep()
    fit_one_step(module, [batch], callbacks=[record])
    hook.remove()
    return module, record, len(calls)


@pytest.fixture(scope="module")
def batch() -> dict:
    return training_batch(random_tiny(0), BATCH, seed=1) | {"caption": CAPTIONS}


def test_teacher_stays_frozen_out_of_optimizer_and_checkpoints(teacher, batch, tmp_path: Path) -> None:
    before = {k: v.clone() for k, v in teacher.bundle.model.state_dict().items()}
    module, record, teacher_calls = sgd_step(teacher, batch)
    assert teacher_calls == 1 and not module.loss.teacher.training and module.model.training
    assert all(torch.equal(v, before[k]) for k, v in module.loss.teacher.state_dict().items())
    assert not any(p.requires_grad for p in module.loss.teacher.parameters())
    assert record.optimized == {id(p) for p in module.model.parameters()}
    assert record.metrics["train/loss_distill"] > 0
    assert record.metrics["train/loss"] == pytest.approx(
        record.metrics["train/loss_contrastive"] + record.metrics["train/loss_distill"], rel=1e-5
    )
    saved = read_checkpoint(save_lightning(module, tmp_path / "student.ckpt"))["state_dict"]
    infonce = ClipModule(random_tiny(0), InfoNCELoss(), optimizer=torch.optim.SGD).state_dict()
    assert saved.keys() == infonce.keys()
    reloaded = ClipModule(random_tiny(1), DistillLoss(teacher), optimizer=torch.optim.SGD)
    reloaded.load_state_dict(saved)  # strict: the teacher, absent from the file, keeps its own weights
    assert torch.equal(reloaded.model.visual.proj, module.model.visual.proj)
    assert torch.equal(reloaded.loss.teacher.visual.proj, before["visual.proj"])


@pytest.mark.slow  # two fits of the tiny model
def test_accumulation_gives_the_whole_batch_gradients(teacher, batch) -> None:
    _, whole, _ = sgd_step(teacher, batch)
    _, accumulated, teacher_calls = sgd_step(teacher, batch, accumulate=2)
    assert teacher_calls == 1  # the teacher embeds the whole batch once, not once per micro-batch
    assert whole.gradients.keys() == accumulated.gradients.keys()
    for name, grad in whole.gradients.items():
        scale = grad.abs().max().item()
        assert torch.allclose(accumulated.gradients[name], grad, rtol=1e-4, atol=1e-5 * scale), name
    assert accumulated.metrics["train/loss"] == pytest.approx(whole.metrics["train/loss"], rel=1e-5)


class LinearStudent(nn.Module):
    """Two linear towers and a learnable scale: enough to check the gathered loss and DDP's averaging."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1234)
        self.image_tower = nn.Linear(12, 6)
        self.text_tower = nn.Linear(10, 6)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return F.normalize(self.image_tower(images), dim=-1), F.normalize(self.text_tower(texts), dim=-1)


def global_batch() -> tuple[torch.Tensor, ...]:
    """Student inputs and the teacher's unit-norm features of the same 8 rows."""
    g = torch.Generator().manual_seed(99)
    images, texts = torch.randn(BATCH, 12, generator=g), torch.randn(BATCH, 10, generator=g)
    return images, texts, *(F.normalize(torch.randn(BATCH, 6, generator=g), dim=-1) for _ in "it")


def student_loss_and_grads(
    rows: tuple[torch.Tensor, ...], options: dict, ddp: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The distillation loss and the student's gradients for this process's rows of the batch."""
    loss = DistillLoss(tiny_teacher(), **options)  # built before any process group, as Hydra builds it
    student = LinearStudent()
    model = DistributedDataParallel(student) if ddp else student
    images, texts, t_img, t_txt = rows
    value = loss(*model(images, texts), student.logit_scale.exp(), teacher_image=t_img, teacher_text=t_txt)
    value.backward()
    return value.detach(), {name: p.grad.clone() for name, p in student.named_parameters()}


def ddp_worker(rank: int, port: int, options: dict, out_dir: str) -> None:
    torch.set_num_threads(1)
    with gloo_group(rank, WORLD_SIZE, port):
        rows = tuple(t.chunk(WORLD_SIZE)[rank] for t in global_batch())
        value, grads = student_loss_and_grads(rows, options, ddp=True)
        dist.all_reduce(value)
        torch.save({"loss": value / WORLD_SIZE, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.parametrize("options", [{}, {"local_loss": True}])
@pytest.mark.slow
@pytest.mark.xdist_group("local_ports")  # a free port for other processes: see conftest.py
def test_ddp_loss_and_gradients_match_one_process(options: dict, tmp_path: Path) -> None:
    mp.spawn(ddp_worker, args=(free_port(), options, str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    expected_loss, expected_grads = student_loss_and_grads(global_batch(), options, ddp=False)
    for rank in range(WORLD_SIZE):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], expected_loss, rtol=1e-5, atol=1e-5)
        for name, grad in expected_grads.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-5, msg=name)


@pytest.fixture
def teacher_ckpt(tmp_path: Path) -> Path:
    """A Lightning checkpoint of a tiny model, in the directory the compose_train runs launch from."""
    return save_lightning(
        ClipModule(random_tiny(5), InfoNCELoss(), optimizer=torch.optim.SGD), tmp_path / "teacher.ckpt"
    )


def test_config_loads_the_teacher_checkpoint_from_the_launch_dir(compose_train, teacher_ckpt) -> None:
    cfg = compose_train("loss=distill", "loss.teacher.ckpt_path=teacher.ckpt", "loss.distill_weight=0.5")
    loss = instantiate(cfg.loss)
    assert isinstance(loss, DistillLoss) and loss.distill_weight == 0.5
    assert torch.equal(loss.teacher.visual.proj, random_tiny(5).visual.proj)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (("loss.teacher.ckpt_path=missing.ckpt",), MissingInputError, r"loss\.teacher\.ckpt_path 'missing"),
        (
            ("model@loss.teacher.config=vitb32", "loss.teacher.config.pretrained=null"),
            ConfigError,
            r"loss\.teacher\.ckpt_path '.*teacher\.ckpt' does not fit loss\.teacher\.config\.name='ViT-B-32'"
            r".*model@loss\.teacher\.config=tiny",
        ),
        (("loss.distill_weight=-1",), ConfigError, r"loss\.distill_weight=-1 is out of range"),
    ],
)
def test_preflight_names_the_teacher_keys(compose_train, teacher_ckpt, overrides, error, message) -> None:
    cfg = compose_train("loss=distill", "loss.teacher.ckpt_path=teacher.ckpt", *overrides)
    with pytest.raises(error, match=message):
        preflight(cfg, "train")


@pytest.mark.slow
def test_training_run_distills_from_a_teacher_checkpoint(
    compose_train, small_catalogue, teacher_ckpt, tmp_path: Path
) -> None:
    cfg = compose_train(
        *TINY_ON_CPU,
        "loss=distill",
        "loss.teacher.ckpt_path=teacher.ckpt",
        "module.accumulate=2",
        "trainer.max_steps=2",
        "test_before_fit=false",
        "test_after_fit=false",
        data_dir=small_catalogue,
    )
    record = RecordStep()
    train(cfg, extra_callbacks=[record])
    assert record.metrics["train/loss_distill"] > 0 and math.isfinite(record.metrics["train/loss"])
    checkpoints = list((tmp_path / "run").rglob("*.ckpt"))
    assert checkpoints
    for path in checkpoints:
        state = read_checkpoint(path)["state_dict"]
        assert not [key for key in state if key.startswith("loss.")], path
