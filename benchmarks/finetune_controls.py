"""Fine-tuning controls on CPU: peak memory and training throughput of ViT-B-32 for each switch.

Run: .venv/bin/python benchmarks/finetune_controls.py --steps 3
Each configuration (none, grad_checkpointing, lock_image, lora) trains a random-init ViT-B-32 on one fixed
batch (--batch images of 224 px, 77-token captions) with the InfoNCE loss and AdamW, in a fresh
subprocess so memory does not carry over. Memory is the process's peak resident set size
(VmHWM, `benchmarks/peak_memory.py`): `peak_rss_mib` over the whole run and `train_rss_mib`,
its growth from the peak before the first step (model, optimizer and batch built) to the peak after the
last, i.e. activations, gradients and AdamW state. Throughput is samples/s over --steps steps after one
warm-up step. The machine's load average is recorded: on shared cores, compare rows of one run only, and
prefer --threads 1 there (two busy threads on two contended cores wait on each other at every barrier).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from fresh_process import json_from_fresh_process
from peak_memory import peak_rss_mib
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from fashion_clip.losses import InfoNCELoss
from fashion_clip.models.factory import create_clip
from fashion_clip.models.lora import LoraSettings
from fashion_clip.models.tower_lock import LockSettings
from fashion_clip.optim import param_groups
from fashion_clip.utils.files import atomic_output

MODEL = "ViT-B-32"
CONFIGS: dict[str, dict[str, Any]] = {
    "none": {},
    "grad_checkpointing": {"grad_checkpointing": True},
    "lock_image": {"lock": LockSettings(image=True)},
    "lora": {"lora": LoraSettings(enabled=True)},
}
CAPTION = "slim fit navy wool blazer with notch lapels, two buttons, flap pockets and a single back vent"


def train_step(model: torch.nn.Module, loss: InfoNCELoss, optimizer: torch.optim.Optimizer, batch) -> None:
    """One full optimizer step: both towers forward, InfoNCE, backward, AdamW."""
    optimizer.zero_grad(set_to_none=True)
    image = model.encode_image(batch[0], normalize=True)
    text = model.encode_text(batch[1], normalize=True)
    loss(image, text, model.logit_scale.exp()).backward()
    optimizer.step()


def measure(config: str, batch_size: int, steps: int) -> dict[str, Any]:
    """Build the configured model and time `steps` training steps after a warm-up step."""
    torch.manual_seed(0)
    clip = create_clip(MODEL, **CONFIGS[config])
    model = clip.model.train()
    batch = (torch.randn(batch_size, 3, 224, 224), clip.tokenizer([CAPTION] * batch_size))
    optimizer = torch.optim.AdamW(param_groups(model.named_parameters()), lr=1e-5, weight_decay=0.1)
    loss = InfoNCELoss()
    built_rss = peak_rss_mib()
    train_step(model, loss, optimizer, batch)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, loss, optimizer, batch)
    seconds = time.perf_counter() - start
    return {
        "config": config,
        "trainable_params_m": round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2),
        "peak_rss_mib": round(peak_rss_mib()),
        "train_rss_mib": round(peak_rss_mib() - built_rss),
        "samples_per_s": round(batch_size * steps / seconds, 2),
        "s_per_step": round(seconds / steps, 2),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }


def run_isolated(config: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one configuration in a fresh interpreter, so its peak RSS is its own."""
    options = ["--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads)]
    command = [sys.executable, __file__, "--worker", config, *options]
    return json_from_fresh_process(command)


def write_results(rows: list[dict[str, Any]], meta: dict[str, Any], out_dir: Path) -> None:
    """Print the table and save it as finetune_controls.{json,md} (temp name, then rename)."""
    columns = list(rows[0])
    table = Table(
        title=f"{MODEL} fine-tuning controls on CPU (batch {meta['batch']}, {meta['threads']} threads)"
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "config" else "right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    Console(width=120).print(table)
    header = f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n"
    markdown = header + "".join(f"| {' | '.join(str(r[c]) for c in columns)} |\n" for r in rows)
    for name, text in (
        ("finetune_controls.json", json.dumps({"meta": meta, "rows": rows}, indent=2)),
        ("finetune_controls.md", markdown),
    ):
        with atomic_output(out_dir / name) as tmp:
            tmp.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options; as the parent, run each configuration in its own subprocess and report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    parser.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.worker, args.batch, args.steps)))
        return 0
    rows = [run_isolated(c, args) for c in tqdm(args.configs, desc="configurations")]
    meta = {"model": MODEL, "batch": args.batch, "steps": args.steps, "threads": args.threads}
    write_results(rows, meta, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
