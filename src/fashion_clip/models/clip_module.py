"""LightningModule around an OpenCLIP dual encoder with a pluggable contrastive loss."""

from __future__ import annotations

import functools
import logging
import math
import signal
import threading
from collections.abc import Callable
from typing import Any

import lightning as L
import open_clip
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn

from fashion_clip.data.datamodule import VALIDATION_LOADERS
from fashion_clip.data.image_pipeline import image_normalization, normalize_on_device
from fashion_clip.errors import ConfigError
from fashion_clip.losses.base import TrainingLoss
from fashion_clip.metrics import RetrievalRecall
from fashion_clip.models.cached_accumulation import accumulate_contrastive_gradients, split_batch
from fashion_clip.optim import build_optimizer, fused_refusal, param_groups

log = logging.getLogger(__name__)


def ensure_logit_params(model: open_clip.CLIP, loss: TrainingLoss) -> None:
    """Give a model the bias its loss needs; SigLIP models keep their pretrained scale and bias."""
    if not loss.uses_logit_bias or getattr(model, "logit_bias", None) is not None:
        return
    model.logit_bias = nn.Parameter(torch.full_like(model.logit_scale.data, loss.init_logit_bias))
    model.logit_scale.data.fill_(loss.init_logit_scale)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so Lightning's Ctrl-C shutdown stops every rank."""


def interrupt_on_sigterm(signum: int, frame: object) -> None:
    """Stop as Ctrl-C does (Lightning tears down, kills the other local ranks, exits 1). Lightning's own
    SIGTERM handler broadcasts from inside the handler, out of step with the other ranks' collectives, which
    can leave DDP ranks waiting forever; and a run it stopped exited 0, as if training had finished."""
    log.warning("received SIGTERM: stopping training")
    raise Terminated(f"received signal {signum}")


def check_accumulate_options(accumulate: int, gradient_clip_val: float | None) -> None:
    """Options wrong on their own fail when the module is built, before any data or weights are read."""
    if accumulate < 1:
        raise ConfigError(
            f"module.accumulate={accumulate} must be at least 1: 1 trains on whole batches, k > 1 splits "
            "each batch of data.batch_size into k micro-batches that still share one contrastive loss."
        )
    if gradient_clip_val is not None and accumulate == 1:
        raise ConfigError(
            f"module.gradient_clip_val={gradient_clip_val} only applies with module.accumulate > 1; with "
            "module.accumulate=1 set trainer.gradient_clip_val instead and module.gradient_clip_val=null."
        )
    if gradient_clip_val is not None and gradient_clip_val <= 0:
        raise ConfigError(
            f"module.gradient_clip_val={gradient_clip_val} must be positive (the maximum gradient norm), "
            "or null for no clipping."
        )


def check_accumulate_fits_run(
    accumulate: int, batch_size: int | None, trainer_accumulate: int, trainer_clip: float | None
) -> None:
    """Options that conflict with the trainer or the data fail before Lightning's own checks and any data."""
    if accumulate == 1:
        return
    if trainer_accumulate > 1:
        raise ConfigError(
            f"trainer.accumulate_grad_batches={trainer_accumulate} with module.accumulate={accumulate}: "
            "Lightning's accumulation runs independent small batches, so each contrastive loss would see "
            "only a fraction of the negatives. Set trainer.accumulate_grad_batches=1 and use only "
            "module.accumulate (data.batch_size is then the contrastive batch per device)."
        )
    if trainer_clip:
        raise ConfigError(
            f"trainer.gradient_clip_val={trainer_clip} cannot be used with module.accumulate={accumulate} "
            "(Lightning refuses it under the manual optimization this needs). Set "
            f"module.gradient_clip_val={trainer_clip} and trainer.gradient_clip_val=null."
        )
    if batch_size is not None and batch_size % accumulate:
        raise ConfigError(
            f"data.batch_size={batch_size} is not divisible by module.accumulate={accumulate}: each batch is "
            "split into module.accumulate equal micro-batches. Pick a data.batch_size that is a multiple of "
            f"module.accumulate (e.g. {batch_size // accumulate * accumulate or accumulate}) or another "
            "module.accumulate."
        )


class ClipModule(L.LightningModule):
    """Trains with the configured loss and validates with product-level retrieval recall.

    `accumulate=k > 1` splits each batch into k micro-batches and accumulates the gradients of the whole
    batch's contrastive loss (models/cached_accumulation.py) with manual optimization, clipping the
    gradient norm at `gradient_clip_val`; `accumulate=1` leaves optimization to Lightning.
    """

    def __init__(
        self,
        model: open_clip.CLIP,
        loss: TrainingLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        max_logit_scale: float = 100.0,
        recall_ks: tuple[int, ...] = (1, 5, 10),
        recall_chunk_size: int = 1024,
        accumulate: int = 1,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__()
        check_accumulate_options(accumulate, gradient_clip_val)
        ensure_logit_params(model, loss)
        self.model = model
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.max_log_scale = math.log(max_logit_scale)
        self.accumulate = accumulate
        self.gradient_clip_val = gradient_clip_val
        self.automatic_optimization = accumulate == 1
        mean, std = image_normalization(model)
        self.register_buffer("image_mean", mean, persistent=False)
        self.register_buffer("image_std", std, persistent=False)
        loss.bind_student(mean, std)
        # validation is the recall hook, one metric per validation loader (val, and the train slice when
        # data.train_eval is set); the test split is scored by the named protocols (train.py)
        self.recall = nn.ModuleDict(
            {
                stage: RetrievalRecall(ks=tuple(recall_ks), chunk_size=recall_chunk_size)
                for stage in VALIDATION_LOADERS
            }
        )

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-norm embeddings of both towers: every loss and metric here works on cosine similarity."""
        return self.model.encode_image(image, normalize=True), self.model.encode_text(text, normalize=True)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 images from the data workers become the model's normalised floats here, on the device."""
        image = batch.get("image") if isinstance(batch, dict) else None
        if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
            batch["image"] = normalize_on_device(image, self.image_mean, self.image_std)
        return batch

    def _log_loss_terms(self, stage: str, size: int) -> None:
        """A loss made of several terms logs each one, so TensorBoard shows which term moves."""
        for name, value in self.loss.terms.items():
            self.log(
                f"{stage}/loss_{name}",
                value,
                batch_size=size,
                sync_dist=stage != "train",
                add_dataloader_idx=False,
            )

    def _loss(
        self, batch: dict[str, Any], distributed: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss plus the embeddings it was computed from (evaluation reuses them for recall)."""
        image, text = self(batch["image"], batch["text"])
        loss = self.loss(
            image,
            text,
            self.model.logit_scale.exp(),
            self.model.logit_bias,
            distributed,
            **self.loss.batch_inputs(batch),
        )
        return loss, image, text

    def _count_skipped(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        """Corrupt samples are dropped by the loader; make the drop visible in TensorBoard."""
        self.log(
            f"{stage}/skipped_samples",
            float(batch["skipped"]),
            reduce_fx="sum",
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=len(batch["image"]),
            add_dataloader_idx=False,
        )

    def on_train_start(self) -> None:
        """Lightning installs its SIGTERM handler just before this hook; replace it (interrupt_on_sigterm)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, interrupt_on_sigterm)

    def configure_callbacks(self) -> list[L.Callback]:
        """The first hook that sees the trainer and data module: check accumulation before any work."""
        datamodule = self.trainer.datamodule
        check_accumulate_fits_run(
            self.accumulate,
            getattr(datamodule, "batch_size", None),
            self.trainer.accumulate_grad_batches,
            self.trainer.gradient_clip_val,
        )
        return []

    def _accumulated_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimizer step on the whole batch's contrastive loss, holding one micro-batch's activations."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss = accumulate_contrastive_gradients(
            self,
            functools.partial(self.loss, **self.loss.batch_inputs(batch)),
            split_batch(batch["image"], batch["text"], self.accumulate),
            self.model.logit_scale,
            self.model.logit_bias,
            self.manual_backward,
        )
        optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the accumulated gradients here: Lightning calls this after AMP has unscaled them."""
        if self.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)[0] if self.automatic_optimization else self._accumulated_step(batch)
        size = len(batch["image"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self._log_loss_terms("train", size)
        self.log("train/logit_scale", self.model.logit_scale.exp(), batch_size=size)
        if self.model.logit_bias is not None:
            self.log("train/logit_bias", self.model.logit_bias, batch_size=size)
        self._count_skipped(batch, "train")
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Clamp the temperature after each step, as CLIP does, so logits cannot blow up."""
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, self.max_log_scale)

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        """Loss for the curve, embeddings into the recall metric for the whole split."""
        loss, image, text = self._loss(batch, distributed=False)
        # each validation loader logs under its own prefix, so Lightning must not append `/dataloader_idx_N`
        self.log(
            f"{stage}/loss", loss, sync_dist=True, batch_size=len(batch["image"]), add_dataloader_idx=False
        )
        self._log_loss_terms(stage, len(batch["image"]))
        self.recall[stage].update(image, text, batch["product"])
        self._count_skipped(batch, stage)

    def _log_recall(self, stage: str) -> None:
        """Recall needs the whole split's gallery, so it is computed once per epoch, not per batch."""
        metric = self.recall[stage]
        scores = metric.compute()
        mean = scores.pop("mean_recall")
        # the metric gathered every rank's embeddings, so each rank holds the same value: `max` over
        # ranks keeps it exact and tells Lightning the value is synced (no per-epoch sync_dist warning)
        synced = {"sync_dist": True, "reduce_fx": "max", "add_dataloader_idx": False}
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()}, **synced)
        self.log(f"{stage}/mean_recall", mean, prog_bar=True, **synced)
        metric.reset()

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_step(batch, VALIDATION_LOADERS[dataloader_idx])

    def on_validation_epoch_end(self) -> None:
        """Recall of each validation loader: val, and the train slice when `data.train_eval` adds it."""
        for stage in VALIDATION_LOADERS[: len(self.trainer.num_val_batches)]:
            self._log_recall(stage)

    def _fused_refusal(self) -> str | None:
        """Why this run cannot use a fused optimizer (None: it can): its device, precision and clipping."""
        clipping = bool(self.trainer.gradient_clip_val) or self.gradient_clip_val is not None
        mixed = isinstance(self.trainer.precision_plugin, MixedPrecision)
        return fused_refusal(self.device.type, mixed, clipping)

    def configure_optimizers(self) -> dict:
        groups = param_groups(self.model.named_parameters())
        optimizer = build_optimizer(self.optimizer_factory, groups, self._fused_refusal())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer, total_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
