"""The study's model presets (vitb32, vitb16, siglip2_vitb16_256) end to end on CPU at random init.

Each preset trains one step under each loss with the fine-tuning controls folded into those two runs
(infonce: LoRA on both towers; siglip: text tower locked, gradient checkpointing, micro-batch
accumulation); each checkpoint is then scored by `evaluate` and exported to plain open_clip. A local
`model.pretrained` file loads with its scale and bias, under an image-tower lock.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import open_clip
import pytest
import torch
from helpers.train_overrides import REAL_ONE_STEP_ON_CPU
from hydra.utils import instantiate

from fashion_clip.demo.catalogue import generate_demo_catalogue
from fashion_clip.deploy.export import export_open_clip
from fashion_clip.evaluation.run import evaluate
from fashion_clip.losses import SigLipLoss
from fashion_clip.models.clip_module import ClipModule
from fashion_clip.models.tower_lock import tower_of
from fashion_clip.training import train

pytestmark = pytest.mark.slow  # each test builds 150M-375M parameter models on CPU

PRESETS = {"vitb32": "ViT-B-32", "vitb16": "ViT-B-16", "siglip2_vitb16_256": "ViT-B-16-SigLIP2-256"}
# per loss, the controls its run also proves: LoRA (attention + MLP, both towers; merged on export), and a
# locked text tower with gradient checkpointing, micro-batches and loss init values the model must not take
CONTROLS = {
    "infonce": ("model.lora.enabled=true",),
    "siglip": (
        "model.lock.text=true",
        "model.grad_checkpointing=true",
        "module.accumulate=2",
        "data.batch_size=4",
        "loss.init_logit_scale=1.0",
        "loss.init_logit_bias=-5.0",
    ),
}
# an optimizer step moves a weight by about lr (5e-5); LoRA's add-and-remove of its update, by ~1e-8
MOVED = 1e-6
EVAL_DATA = ("data.num_workers=0", "data.eval_batch_size=8")


@pytest.fixture(scope="module")
def mini_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A handful of products: a train batch, a validation batch, a test split `evaluate` embeds quickly."""
    root = tmp_path_factory.mktemp("mini")
    generate_demo_catalogue(root / "demo", products={"train": 8, "val": 4, "test": 3}, image_size=32)
    return root


def preset_overrides(preset: str, tokenizer: Path) -> tuple[str, ...]:
    """The preset at random init, with the stand-in tokenizer where the model's own is on the hub."""
    hf = open_clip.get_model_config(PRESETS[preset])["text_cfg"].get("hf_tokenizer_name")
    return (f"model={preset}", "model.pretrained=null") + ((f"model.tokenizer={tokenizer}",) if hf else ())


def fixed_inputs(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random images at the model's resolution and two random token sequences of its context length."""
    config = open_clip.get_model_config(name)
    size = config["vision_cfg"]["image_size"]
    length = config["text_cfg"].get("context_length", 77)
    generator = torch.Generator().manual_seed(3)
    return torch.randn(2, 3, size, size, generator=generator), torch.randint(
        1, 100, (2, length), generator=generator
    )


@torch.no_grad()
def embed(model: torch.nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Both towers' unit embeddings in eval mode."""
    model.eval()
    return model.encode_image(inputs[0], normalize=True), model.encode_text(inputs[1], normalize=True)


def assert_same_embeddings(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> None:
    """Equal up to float rounding (LoRA merging reorders the sums)."""
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


class StepRecord(L.Callback):
    """The parameters before fitting, the trained module and its last training loss."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.before = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}
        self.bias = {n: v.clone() for n, v in pl_module.model.state_dict().items() if tower_of(n) is None}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.module = pl_module
        self.loss = trainer.callback_metrics["train/loss"]

    def moved(self) -> set[str]:
        """The towers' parameters the step moved (by more than LoRA's float rounding of frozen weights)."""
        now = dict(self.module.model.named_parameters())
        return {n for n, p in self.before.items() if tower_of(n) and (p - now[n]).abs().max() > MOVED}


@pytest.mark.parametrize("loss", ["infonce", "siglip"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_one_step_then_evaluate_and_export(
    compose_train, mini_catalogue, stand_in_tokenizer, tmp_path, preset: str, loss: str
) -> None:
    name, model = PRESETS[preset], preset_overrides(preset, stand_in_tokenizer)
    cfg = compose_train(
        *REAL_ONE_STEP_ON_CPU, *model, f"loss={loss}", *CONTROLS[loss], data_dir=mini_catalogue
    )
    record = StepRecord()
    train(cfg, extra_callbacks=[record])

    assert torch.isfinite(record.loss)
    moved = record.moved()
    if loss == "infonce":  # only adapters move, in both towers, and every B matrix (zero at init) does
        assert moved and all("lora_" in n for n in moved)
        assert {n for n in record.before if "lora_B" in n} <= moved
        assert {tower_of(n) for n in moved} == {"image", "text"}
    else:  # most of the image tower moves, nothing of the locked text tower
        assert {tower_of(n) for n in moved} == {"image"}
        assert len(moved) > sum(tower_of(n) == "image" for n in record.before) // 2
        # a SigLIP architecture keeps its own scale and bias, the others get the loss's initial values
        own = open_clip.get_model_config(name).get("init_logit_bias") is not None
        expected = (math.log(1 / 0.07), -10.0) if own else (1.0, -5.0)
        assert (record.bias["logit_scale"].item(), record.bias["logit_bias"].item()) == pytest.approx(
            expected
        )
    (ckpt,) = (tmp_path / "run" / "checkpoints").glob("*.ckpt")

    protocol = ("protocol=[full]", "evaluation.split=test", "evaluation.device=cpu", f"ckpt_path={ckpt}")
    controls = [o for o in CONTROLS[loss] if o.startswith("model.")]
    evaluated = evaluate(
        compose_train(
            *model, *controls, *protocol, *EVAL_DATA, config_name="evaluate", data_dir=mini_catalogue
        )
    )
    (full,) = evaluated
    assert full.protocol == "full" and full.stage == "finetuned"
    assert 0.0 <= full.metrics["mean_recall"] <= 1.0 and full.metrics["skipped"] == 0

    lora = instantiate(cfg.model.lora)
    out = export_open_clip(name, ckpt, tmp_path / "plain.pt", lora=lora)
    plain = open_clip.create_model_and_transforms(name, pretrained=str(out))[0]
    inputs = fixed_inputs(name)
    assert_same_embeddings(embed(plain, inputs), embed(record.module.model, inputs))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_local_pretrained_file_loads_locked_with_its_scale_and_bias(
    compose_train, stand_in_tokenizer, tmp_path, preset: str
) -> None:
    name = PRESETS[preset]
    saved = instantiate(compose_train(*preset_overrides(preset, stand_in_tokenizer)).model).model
    with torch.no_grad():
        saved.logit_scale.fill_(1.5)
        if saved.logit_bias is not None:
            saved.logit_bias.fill_(-3.0)
    torch.save(saved.state_dict(), tmp_path / "weights.pt")

    torch.manual_seed(1)  # another random init underneath: only the file can make them equal
    cfg = compose_train(
        *preset_overrides(preset, stand_in_tokenizer),
        f"model.pretrained={tmp_path}/weights.pt",
        "model.lock.image=true",
    )
    loaded = instantiate(cfg.model).model
    trainable = {tower_of(n) for n, p in loaded.named_parameters() if p.requires_grad}
    assert trainable == {"text", None}  # the lock froze the whole image tower once the weights loaded
    inputs = fixed_inputs(name)
    assert_same_embeddings(embed(loaded, inputs), embed(saved, inputs))

    ClipModule(loaded, SigLipLoss(init_logit_scale=2.0, init_logit_bias=-10.0), torch.optim.AdamW)
    assert loaded.logit_scale.item() == (1.5 if saved.logit_bias is not None else 2.0)
    assert loaded.logit_bias.item() == (-3.0 if saved.logit_bias is not None else -10.0)
