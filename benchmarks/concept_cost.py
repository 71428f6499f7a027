"""Training-speed cost of the concept term (`loss=concept`) against its base loss, side by side.

Run: .venv/bin/python benchmarks/concept_cost.py [--model FashionCLIP-Tiny --batch 64 --steps 20]
Builds the knowledge base of --data (the demo catalogue's train split by default) and times full
optimizer steps (both towers forward, loss, backward, AdamW) on one batch of real captions and random
images, alternating base and concept steps so both see the same machine load. The bank refresh (every
prompt through the text tower, plus prototypes when --prototype-weight > 0) is timed apart; the
amortised cost adds it once per --refresh-every steps. Writes outputs/bench/concept_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from fashion_clip.knowledge.bank_refresh import ConceptBankRefresh
from fashion_clip.knowledge.build import build_knowledge_base, training_captions
from fashion_clip.losses import InfoNCELoss, TrainingLoss
from fashion_clip.losses.concept import ConceptLoss
from fashion_clip.models.factory import create_clip
from fashion_clip.optim import param_groups
from fashion_clip.utils.files import atomic_output


def step_seconds(
    model: torch.nn.Module,
    loss: TrainingLoss,
    optimizer,
    batch: dict[str, Any],
    bank: ConceptBankRefresh | None = None,
) -> float:
    """One timed optimizer step; the concept bank first matches the batch's captions, as in a run."""
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    if bank is not None:  # the bank was embedded at step 0: targets only
        batch = {**batch, **bank.targets(batch["caption"], model.logit_scale.device)}
    image = model.encode_image(batch["image"], normalize=True)
    text = model.encode_text(batch["text"], normalize=True)
    loss(image, text, model.logit_scale.exp(), None, False, **loss.batch_inputs(batch)).backward()
    optimizer.step()
    return time.perf_counter() - start


def refresh_seconds(
    bank: ConceptBankRefresh, loss: ConceptLoss, model: torch.nn.Module, repeats: int = 3
) -> float:
    """Median time to re-embed the whole bank (and prototypes)."""
    times = []
    for step in range(repeats):
        start = time.perf_counter()
        bank.refresh(model, loss, step)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(args: argparse.Namespace, kb: Path) -> dict[str, Any]:
    """Median step time of each loss over alternating steps, the refresh time and the amortised ratio."""
    torch.manual_seed(0)
    clip = create_clip(args.model)
    model = clip.model.train()
    samples, _ = training_captions(args.data)
    captions = [captions[0] for _, captions in itertools.islice(samples, args.batch)]
    size = model.visual.image_size
    size = size if isinstance(size, int) else size[0]
    batch = {
        "image": torch.randn(len(captions), 3, size, size),
        "text": clip.tokenizer(captions),
        "caption": captions,
    }
    optimizer = torch.optim.AdamW(param_groups(model.named_parameters()), lr=1e-5)
    concept = ConceptLoss(InfoNCELoss(), prototype_weight=args.prototype_weight)
    bank = ConceptBankRefresh(kb, clip.tokenizer, refresh_every=args.refresh_every, prototype_data=args.data)
    bank.load(concept.uses_prototypes)
    bank.refresh(model, concept, step=0)
    losses = {"base": (InfoNCELoss(), None), "concept": (concept, bank)}
    times: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(args.warmup):
        for loss, loss_bank in losses.values():
            step_seconds(model, loss, optimizer, batch, loss_bank)
    for _ in tqdm(range(args.steps), desc="alternating steps"):
        for name, (loss, loss_bank) in losses.items():
            times[name].append(step_seconds(model, loss, optimizer, batch, loss_bank))
    base, with_concept = (statistics.median(times[name]) for name in losses)
    refresh = refresh_seconds(bank, concept, model)
    amortised = with_concept + refresh / args.refresh_every
    return {
        "model": args.model,
        "batch": len(captions),
        "concepts": len(bank.prompt_tokens),
        "prototype_weight": args.prototype_weight,
        "base_s_per_step": round(base, 4),
        "concept_s_per_step": round(with_concept, 4),
        "refresh_s": round(refresh, 3),
        "refresh_every": args.refresh_every,
        "amortised_s_per_step": round(amortised, 4),
        "cost_ratio": round(amortised / base, 3),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }


def write_results(row: dict[str, Any], out_dir: Path) -> None:
    """Print the row as a table and save concept_cost.{json,md} (temp name, then rename)."""
    table = Table(title="Training-speed cost of the concept term")
    for column in row:
        table.add_column(column, justify="right")
    table.add_row(*(str(v) for v in row.values()))
    Console(width=200).print(table)
    markdown = (
        f"| {' | '.join(row)} |\n|{'---|' * len(row)}\n| {' | '.join(str(v) for v in row.values())} |\n"
    )
    for name, text in (("concept_cost.json", json.dumps(row, indent=2)), ("concept_cost.md", markdown)):
        with atomic_output(out_dir / name) as tmp:
            tmp.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the knowledge base in a temporary directory, measure, report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data", default="data/demo/train", help="train shards (run `make demo` first)")
    parser.add_argument("--model", default="FashionCLIP-Tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per loss, alternating")
    parser.add_argument("--refresh-every", type=int, default=100)
    parser.add_argument("--prototype-weight", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as kb:
        build_knowledge_base(args.data, kb)
        write_results(measure(args, Path(kb)), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
