"""Evaluation records: what a run evaluated (its identity: model, weights, loss, data, split), the
metrics it got (a protocol's per-category numbers under `by_category/<category>/<metric>` keys beside its
totals) and `evaluation_results.json`, one flat record per (run, protocol), which train, evaluate, wise,
tune and every report write and read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from fashion_clip.errors import UserError
from fashion_clip.utils.files import atomic_output

RUN_CONFIG_DEPTH = 3


def training_loss(ckpt_path: str | None) -> str | None:
    """The loss a checkpoint was trained with, read from its run's saved Hydra choices when present."""
    if not ckpt_path:
        return None
    for parent in list(Path(ckpt_path).resolve().parents)[:RUN_CONFIG_DEPTH]:
        saved = parent / ".hydra" / "hydra.yaml"
        if saved.is_file():
            choices = yaml.safe_load(saved.read_text())["hydra"]["runtime"]["choices"]
            return choices.get("loss")
    return None


def run_identity(
    cfg: DictConfig, stage: str, checkpoint: str | None, loss: str | None
) -> dict[str, str | None]:
    """The identity fields of every record train, evaluate and wise write, in one order for all three."""
    return {
        "model": cfg.model.name,
        "pretrained": cfg.model.pretrained,
        "checkpoint": checkpoint,
        "loss": loss,
        "data": cfg.data.name,
        "split": cfg.evaluation.split,
        "stage": stage,
    }


def run_title(cfg: DictConfig, stage: str) -> str:
    """What was evaluated, for printed tables and gallery pages."""
    return f"{cfg.model.name} on {cfg.data.name}/{cfg.evaluation.split} ({stage})"


PREFIX = "by_category/"

Breakdown = dict[str, dict[str, float]]


def flatten(breakdown: Breakdown) -> dict[str, float]:
    """Keys for a flat metrics dict: `by_category/<category>/<metric>`."""
    return {
        f"{PREFIX}{category}/{name}": value
        for category, values in breakdown.items()
        for name, value in values.items()
    }


def unflatten(metrics: Mapping[str, float]) -> Breakdown:
    """The per-category part of a metrics dict, categories in stored order (a category may contain '/')."""
    breakdown: Breakdown = {}
    for key, value in metrics.items():
        if key.startswith(PREFIX):
            category, name = key[len(PREFIX) :].rsplit("/", 1)
            breakdown.setdefault(category, {})[name] = value
    return breakdown


RESULTS_NAME = "evaluation_results.json"
FORMAT = "fashion_clip.evaluation/1"
BASE, FINETUNED = "base", "finetuned"


class ResultsFileError(UserError, ValueError):
    """An evaluation results file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class EvaluationRecord:
    """What was evaluated (model, weights, loss, data, split) and how (protocol), with its metrics.

    `stage` is `base` for the model as created (pretrained or random init) and `finetuned` for a
    checkpoint, so a report can compute each fine-tuned run's gain over its own base model.
    """

    model: str
    pretrained: str | None
    checkpoint: str | None
    loss: str | None
    data: str
    split: str
    stage: str
    protocol: str
    metrics: dict[str, float]
    seconds: float = 0.0
    source: str = field(default="", compare=False)

    def base_key(self) -> tuple[Any, ...]:
        """Records sharing this key compare like for like: same base weights, data, split and protocol."""
        return (self.model, self.pretrained, self.data, self.split, self.protocol)


def write_results(records: list[EvaluationRecord], out_dir: str | Path) -> Path:
    """Write the records as JSON (temp name, then rename, so a crash never leaves half a file)."""
    path = Path(out_dir) / RESULTS_NAME
    rows = [{k: v for k, v in asdict(r).items() if k != "source"} for r in records]
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT, "records": rows}, indent=2))
    return path


def read_results(path: str | Path) -> list[EvaluationRecord]:
    """Records of one results file; `source` is set to the file so reports can say where a row came from."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        if payload.get("format") != FORMAT:
            raise ValueError(f"format is {payload.get('format')!r}, expected {FORMAT!r}")
        return [EvaluationRecord(**row, source=str(path)) for row in payload["records"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise ResultsFileError(
            f"cannot read evaluation results '{path}': {type(e).__name__}: {e}. "
            f"Re-run `python -m fashion_clip.evaluate` for that run, or leave the file out of the report."
        ) from e
