"""The ConceptBankRefresh callback: it reads (or builds) the knowledge base, re-embeds the bank into the loss
on schedule, in the run's precision, after loaded weights, and adds each batch's concept targets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers.concepts import CAPTIONS, CONCEPTS, DIM, BankModel, index_tokenizer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from torch import nn

from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.knowledge.bank_refresh import ConceptBankRefresh
from fashion_clip.knowledge.concepts import ConceptMatcher
from fashion_clip.knowledge.fashionklip_kb import QUERIES, write_knowledge_base
from fashion_clip.losses import InfoNCELoss
from fashion_clip.losses.base import TrainingLoss
from fashion_clip.losses.concept import HYPERNYM_TARGETS, NAMED_TARGETS, ConceptLoss


class Run(nn.Module):
    """What the callback reads from the LightningModule: the towers and the loss."""

    def __init__(self, loss: TrainingLoss) -> None:
        super().__init__()
        self.model = BankModel()
        self.loss = loss


def trainer_at(step: int, precision: Precision | None = None) -> SimpleNamespace:
    """What the callback reads from the trainer: the optimizer steps taken and the precision plugin."""
    return SimpleNamespace(global_step=step, precision_plugin=precision or Precision())


@pytest.fixture(scope="module")
def knowledge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kb")
    write_knowledge_base(CONCEPTS, root)
    return root


def set_up(knowledge_dir: Path, refresh_every: int = 100) -> tuple[ConceptBankRefresh, Run]:
    """A callback on the hand-written knowledge base, set up on a run with a concept loss."""
    torch.manual_seed(0)
    bank = ConceptBankRefresh(knowledge_dir, index_tokenizer, refresh_every=refresh_every)
    run = Run(ConceptLoss(InfoNCELoss()))
    bank.setup(trainer_at(0), run, "fit")
    return bank, run


def test_bank_is_refreshed_every_n_steps_and_fixed_in_between(knowledge_dir: Path) -> None:
    bank, run = set_up(knowledge_dir, refresh_every=3)
    named, hypernyms = ConceptMatcher(CONCEPTS).targets(CAPTIONS)
    refreshed = []
    for step in range(8):
        calls = run.model.calls
        batch = {"caption": CAPTIONS}
        bank.on_train_batch_start(trainer_at(step), run, batch, step)
        bank.on_validation_batch_start(trainer_at(step), run, {"caption": CAPTIONS[:2]}, 0)  # same step
        if run.model.calls > calls:
            refreshed.append(step)
            expected = run.model.prompt_bank().detach()
        assert torch.equal(run.loss.bank, expected)
        assert torch.equal(batch[NAMED_TARGETS], named) and torch.equal(batch[HYPERNYM_TARGETS], hypernyms)
        with torch.no_grad():
            run.model.table.add_(0.1)  # the text tower trains between steps
    assert refreshed == [0, 3, 6]
    assert not run.loss.bank.requires_grad
    assert "bank" not in run.loss.state_dict()


def test_loading_weights_makes_the_next_batch_refresh_the_bank(knowledge_dir: Path) -> None:
    bank, run = set_up(knowledge_dir, refresh_every=100)
    bank.on_train_batch_start(trainer_at(5), run, {"caption": CAPTIONS}, 0)
    run.load_state_dict(run.state_dict())  # what Lightning does when it loads a checkpoint
    calls = run.model.calls
    bank.on_validation_batch_start(trainer_at(6), run, {"caption": CAPTIONS}, 0)
    assert run.model.calls > calls and bank.refreshed_at == 6


def test_a_bank_embedded_during_evaluation_trains(knowledge_dir: Path) -> None:
    bank, run = set_up(knowledge_dir)
    with torch.inference_mode():  # Lightning's validation loop, e.g. its sanity check before fit
        bank.on_validation_batch_start(trainer_at(0), run, {"caption": CAPTIONS}, 0)
    batch = {"caption": CAPTIONS}
    bank.on_train_batch_start(trainer_at(0), run, batch, 0)
    image = torch.randn(len(CAPTIONS), DIM, requires_grad=True)
    text = torch.randn(len(CAPTIONS), DIM)
    run.loss(image, text, torch.tensor(10.0), **run.loss.batch_inputs(batch)).backward()
    assert image.grad.abs().sum() > 0


def test_the_bank_is_embedded_in_the_runs_precision(knowledge_dir: Path) -> None:
    """Under mixed precision the bank is the towers' autocast output, as the training step sees them."""
    bank, run = set_up(knowledge_dir)
    mixed = trainer_at(0, MixedPrecision("bf16-mixed", "cpu"))
    bank.on_train_batch_start(mixed, run, {"caption": CAPTIONS}, 0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = run.model.prompt_bank().float()
    assert torch.equal(run.loss.bank, expected)
    assert not torch.equal(run.loss.bank, run.model.prompt_bank().detach())


def test_missing_knowledge_base_is_built_from_the_training_data(
    small_catalogue: Path, tmp_path: Path
) -> None:
    with pytest.raises(MissingInputError, match="knowledge.build"):
        ConceptBankRefresh(tmp_path / "none", index_tokenizer).load(uses_prototypes=False)
    built = tmp_path / "built"
    bank = ConceptBankRefresh(built, index_tokenizer, build_from=str(small_catalogue / "demo" / "train"))
    bank.load(uses_prototypes=False)
    assert (built / QUERIES).is_file()
    assert bank.matcher.size == len(bank.prompt_tokens) > 0


def test_invalid_refresh_every_names_the_key(knowledge_dir: Path) -> None:
    with pytest.raises(ConfigError, match="callbacks.concept_bank.refresh_every=0"):
        ConceptBankRefresh(knowledge_dir, index_tokenizer, refresh_every=0)


def test_setup_refuses_a_run_without_a_concept_loss(knowledge_dir: Path) -> None:
    bank = ConceptBankRefresh(knowledge_dir, index_tokenizer)
    with pytest.raises(ConfigError, match="loss=concept, but the loss is InfoNCELoss"):
        bank.setup(trainer_at(0), Run(InfoNCELoss()), "fit")
