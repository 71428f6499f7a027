"""The training-throughput rows of `make bench`: one model config, precision, batch and step count each,
run by both trainers. GPU rows are listed here too and only run where CUDA is available."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# precision -> (our trainer.precision, open_clip_train --precision)
PRECISIONS = {"fp32": ("32-true", "fp32"), "bf16": ("bf16-mixed", "amp_bf16"), "fp16": ("16-mixed", "amp")}


@dataclass(frozen=True)
class TrainingRow:
    """What both trainers are given for one row; `warmup` steps are run but not timed."""

    name: str
    preset: str  # our conf/model preset
    model: str  # its open_clip model name
    precision: str  # a key of PRECISIONS
    batch_size: int
    shard_image_size: int  # side of the JPEGs in the benchmark shards
    warmup: int
    steps: int
    device: str = "cpu"
    loss: str = "infonce"  # our conf/loss preset; siglip is open_clip_train's --siglip
    ours_overrides: tuple[str, ...] = ()  # a speed-up of ours under test (open_clip_train runs as in its row)

    @property
    def total_steps(self) -> int:
        """Steps each trainer runs: the warm-up, then the timed ones."""
        return self.warmup + self.steps

    def samples_needed(self, workers: int) -> int:
        """Samples both trainers may read: every data worker makes whole batches of its own shards."""
        return math.ceil(self.total_steps / max(1, workers)) * max(1, workers) * self.batch_size


# torch.compile of both towers (inductor); the compilation falls in the first, untimed warm-up step
COMPILE = "model.compile=true"
# torch's default (foreach) AdamW instead of our fused default: what the fused default buys
UNFUSED = "optimizer.fused=false"
TINY_FP32 = TrainingRow("tiny-fp32", "tiny", "FashionCLIP-Tiny", "fp32", 64, 96, warmup=5, steps=30)
VITB32_FP32 = TrainingRow("vitb32-fp32", "vitb32", "ViT-B-32", "fp32", 32, 256, warmup=2, steps=6)


def sped_up(row: TrainingRow, suffix: str, *overrides: str) -> TrainingRow:
    """The row with our trainer's settings changed by `overrides` (a speed-up switched on or off);
    open_clip_train runs as in the row."""
    return replace(row, name=f"{row.name}-{suffix}", ours_overrides=overrides)


ROWS = (
    TINY_FP32,
    sped_up(TINY_FP32, "unfused", UNFUSED),
    sped_up(TINY_FP32, "compile", COMPILE),
    TrainingRow("tiny-bf16", "tiny", "FashionCLIP-Tiny", "bf16", 64, 96, warmup=1, steps=3),
    VITB32_FP32,
    sped_up(VITB32_FP32, "compile", COMPILE),
    TrainingRow("vitb32-bf16", "vitb32", "ViT-B-32", "bf16", 32, 256, warmup=1, steps=2),
    TrainingRow("vitb16-fp16", "vitb16", "ViT-B-16", "fp16", 128, 256, warmup=10, steps=50, device="cuda"),
    TrainingRow(
        "siglip2-fp16",
        "siglip2_vitb16_256",
        "ViT-B-16-SigLIP2-256",
        "fp16",
        128,
        256,
        warmup=10,
        steps=50,
        device="cuda",
        loss="siglip",
    ),
)
# the smoke row carries a (cheap) override, so the interleaved speed-up section runs too
SMOKE_ROW = replace(sped_up(TINY_FP32, "smoke", UNFUSED), batch_size=8, warmup=1, steps=2)
# rows too slow to run by default where bf16 is emulated (one ViT-B/32 bf16 step took over 10 minutes on
# the 2-core AVX2 EPYC that fp32 runs in about 10 s)
SLOW_WITHOUT_NATIVE_BF16 = ("tiny-bf16", "vitb32-bf16")
# (warm-up, timed steps) at least, where bf16 is native: 3 timed tiny-bf16 steps read 0.67 of open_clip_train
# where 30 read 1.02 in the same session (issue 16); the warm-ups are the fp32 rows'
NATIVE_BF16_STEPS = {"tiny-bf16": (TINY_FP32.warmup, 20), "vitb32-bf16": (VITB32_FP32.warmup, 10)}


def skip_reason(row: TrainingRow, requested: bool, cuda: bool, native_bf16: bool) -> str | None:
    """Why a row is not run on this machine, or None to run it; a row named on the command line always
    runs where its device exists."""
    if row.device == "cuda" and not cuda:
        return "not run: no GPU (torch.cuda.is_available() is False)"
    if row.name in SLOW_WITHOUT_NATIVE_BF16 and not native_bf16 and not requested:
        return (
            "not run: this CPU has no native bf16 (emulated bf16 is 10-100x slower than fp32 here); "
            f"force it with --rows {row.name}"
        )
    return None


def with_steps(row: TrainingRow, warmup: int | None, steps: int | None) -> TrainingRow:
    """The row with the command line's warm-up and timed step counts, where given."""
    return replace(row, warmup=row.warmup if warmup is None else warmup, steps=steps or row.steps)


def steps_for_machine(row: TrainingRow, native_bf16: bool) -> TrainingRow:
    """The row's steps for this CPU: bf16 rows run few steps because emulated bf16 takes minutes per
    step, too few for a stable ratio where bf16 is native."""
    if not native_bf16 or row.name not in NATIVE_BF16_STEPS:
        return row
    warmup, steps = NATIVE_BF16_STEPS[row.name]
    return replace(row, warmup=max(row.warmup, warmup), steps=max(row.steps, steps))
