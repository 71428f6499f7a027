"""An evaluation run from its config: score the base model or a checkpoint under the named protocols.

The entry point `python -m fashion_clip.evaluate` and `fashion_clip.api.evaluate` both run `evaluate`.
"""

from __future__ import annotations

import lightning as L
from omegaconf import DictConfig

from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.evaluation.front_door import split_scoring, write_run_outputs
from fashion_clip.preflight import preflight
from fashion_clip.records import BASE, FINETUNED, EvaluationRecord, run_identity, run_title, training_loss
from fashion_clip.reports.tables import print_fields, print_records


def evaluate(cfg: DictConfig) -> list[EvaluationRecord]:
    """Embed the split once with the base model or a checkpoint, score each protocol, write and print."""
    scoring = split_scoring(cfg, "evaluate")
    preflight(cfg, "evaluate")
    root = cfg.paths.root_dir
    L.seed_everything(cfg.seed)
    loaded = load_clip(cfg.model, cfg.ckpt_path, root=root, trust_checkpoint=cfg.trust_checkpoint)
    stage = FINETUNED if loaded.ckpt_path else BASE
    records, split = scoring.score(
        loaded.bundle, run_identity(cfg, stage, loaded.ckpt_path, training_loss(loaded.ckpt_path))
    )
    splits = {stage: split}
    if scoring.gallery_base:
        L.seed_everything(cfg.seed)  # the base model exactly as a base evaluation builds it
        splits[BASE] = scoring.embed(load_clip(cfg.model, root=root).bundle)
    write_run_outputs(cfg, scoring, records, splits)
    print_records(records, run_title(cfg, stage))
    print_fields(records)
    return records
