"""An evaluation run from its config: score the base model, a checkpoint or an ONNX export under the
named protocols.

The entry point `python -m fashion_clip.evaluate` and `fashion_clip.api.evaluate` both run `evaluate`.
"""

from __future__ import annotations

import lightning as L
from omegaconf import DictConfig

from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.errors import ConfigError
from fashion_clip.evaluation.front_door import split_scoring, write_run_outputs
from fashion_clip.preflight import preflight
from fashion_clip.records import BASE, FINETUNED, EvaluationRecord, run_identity, run_title, training_loss
from fashion_clip.reports.leaderboard import print_tasks
from fashion_clip.reports.tables import print_fields, print_records


def evaluate(cfg: DictConfig) -> list[EvaluationRecord]:
    """Embed the split once with the base model, a checkpoint or an ONNX export (`onnx=`, always of a
    checkpoint: recorded as fine-tuned, with its directory as the weights), score each protocol, write and
    print."""
    scoring = split_scoring(cfg, "evaluate")
    preflight(cfg, "evaluate")
    root = cfg.paths.root_dir
    L.seed_everything(cfg.seed)
    onnx = cfg.get("onnx")
    loaded = load_clip(cfg.model, cfg.ckpt_path, root=root, onnx=onnx, trust_checkpoint=cfg.trust_checkpoint)
    if onnx and loaded.bundle.name != cfg.model.name:
        raise ConfigError(
            f"onnx={onnx} is an export of {loaded.bundle.name}, but model.name={cfg.model.name}: choose the "
            f"model= preset named {loaded.bundle.name}, so the records name the model evaluated"
        )
    weights = loaded.ckpt_path or loaded.config.get("onnx")
    stage = FINETUNED if weights else BASE
    records, split = scoring.score(
        loaded.bundle, run_identity(cfg, stage, weights, training_loss(loaded.ckpt_path))
    )
    splits = {stage: split}
    if scoring.gallery_base:
        L.seed_everything(cfg.seed)  # the base model exactly as a base evaluation builds it
        splits[BASE] = scoring.embed(load_clip(cfg.model, root=root).bundle)
    write_run_outputs(cfg, scoring, records, splits)
    print_records(records, run_title(cfg, stage))
    print_fields(records)
    print_tasks(records)
    return records
