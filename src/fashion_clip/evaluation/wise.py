"""WiSE-FT (Wortsman et al., 2022): the zero-shot and fine-tuned weights mixed at each alpha, every mix
scored on one embedding pass, the results and the comparison written as an evaluation run writes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.front_door import split_scoring, write_run_outputs
from fashion_clip.preflight import preflight
from fashion_clip.records import BASE, FINETUNED, EvaluationRecord, run_identity, training_loss
from fashion_clip.reports.comparison import gather, write_report
from fashion_clip.reports.tables import print_records

State = Mapping[str, torch.Tensor]


def check_alphas(alphas: Sequence[float]) -> list[float]:
    """Mixing weights outside [0, 1] extrapolate, which WiSE-FT does not claim anything about."""
    values = [float(a) for a in alphas]
    if not values or any(not 0.0 <= a <= 1.0 for a in values):
        raise ConfigError(f"alphas must be a non-empty list of numbers in [0, 1], got {list(alphas)}")
    return values


def interpolate(zero_shot: State, finetuned: State, alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) * zero-shot + alpha * fine-tuned for float tensors; others (and keys the zero-shot
    model lacks, such as a SigLIP bias added in training) come from the fine-tuned weights."""
    mixed = {}
    for key, tuned in finetuned.items():
        base = zero_shot.get(key)
        if base is None or not tuned.is_floating_point():
            mixed[key] = tuned
        else:
            mixed[key] = torch.lerp(base.to(tuned.dtype), tuned, alpha)
    return mixed


def stage_name(alpha: float) -> str:
    """alpha 0 is the zero-shot model and 1 the fine-tuned one, so reports compute gains as usual."""
    return BASE if alpha == 0.0 else FINETUNED if alpha == 1.0 else f"wise-{alpha:.2f}"


def wise(cfg: DictConfig) -> list[EvaluationRecord]:
    """Evaluate every interpolation on one embedding pass each, then write results and the comparison."""
    scoring = split_scoring(cfg, "wise")
    preflight(cfg, "wise")
    alphas = check_alphas(cfg.alphas)
    root = cfg.paths.root_dir
    L.seed_everything(cfg.seed)  # the zero-shot model exactly as a base evaluation builds it
    zero_shot = load_clip(cfg.model, root=root).bundle.model.state_dict()
    tuned = load_clip(cfg.model, cfg.ckpt_path, root=root, trust_checkpoint=cfg.trust_checkpoint)
    finetuned = {k: v.clone() for k, v in tuned.bundle.model.state_dict().items()}
    loss = training_loss(tuned.ckpt_path)
    records: list[EvaluationRecord] = []
    for alpha in alphas:
        tuned.bundle.model.load_state_dict(interpolate(zero_shot, finetuned, alpha))
        mixed = None if alpha == 0.0 else f"{tuned.ckpt_path}@alpha={alpha:g}"
        scored, _ = scoring.score(tuned.bundle, run_identity(cfg, stage_name(alpha), mixed, loss))
        print_records(scored, f"alpha={alpha:g}")
        records += scored
    write_run_outputs(cfg, scoring, records, {})
    out_dir = Path(cfg.paths.output_dir)
    write_report(gather([out_dir]), out_dir)
    return records
