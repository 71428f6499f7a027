"""`evaluation_results.json`: one flat record per (run, protocol), for reports mixing evaluate and train."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fashion_clip.errors import UserError
from fashion_clip.utils.atomic_output import atomic_output

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
