"""Human-facing results: hyperparameters to TensorBoard and the before/after recall table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mean_recall")


def log_hyperparameters(trainer: L.Trainer, cfg: DictConfig, module: L.LightningModule) -> None:
    """The whole resolved config plus parameter counts, so TensorBoard's HPARAMS tab can compare runs."""
    params = dict(OmegaConf.to_container(cfg, resolve=True))
    params.pop("paths", None)
    params["params/total"] = sum(p.numel() for p in module.parameters())
    params["params/trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    for logger in trainer.loggers:
        logger.log_hyperparams(params)


def before_after_rows(results: dict[str, dict[str, float]], stage: str = "test") -> list[tuple[str, ...]]:
    """Rows of metric, before, after and gain, for whichever of the two evaluations ran."""
    rows = []
    for key in RECALL_KEYS:
        before = results.get("before", {}).get(f"{stage}/{key}")
        after = results.get("after", {}).get(f"{stage}/{key}")
        gain = f"{after / before:.1f}x" if before and after is not None else "-"
        rows.append((key, *(f"{v:.4f}" if v is not None else "-" for v in (before, after)), gain))
    return rows


def _markdown(rows: list[tuple[str, ...]]) -> str:
    """GitHub-flavoured table for READMEs and issue comments."""
    lines = ["| metric | before | after | gain |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {' | '.join(r)} |" for r in rows]) + "\n"


def write_before_after(results: dict[str, dict[str, float]], output_dir: str | Path) -> Path:
    """Print the recall table and save it as JSON and markdown (temp name, then rename)."""
    rows = before_after_rows(results)
    table = Table(title="Test recall before and after fine-tuning")
    for column in ("metric", "before", "after", "gain"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("recall_before_after.json", json.dumps(results, indent=2)),
        ("recall_before_after.md", _markdown(rows)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    return out / "recall_before_after.md"
