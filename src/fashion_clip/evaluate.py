"""Evaluation entry point: `python -m fashion_clip.evaluate model=vitb32 data=fashiongen [ckpt_path=...]`."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashion_clip.config import CONFIG_DIR
from fashion_clip.errors import ConfigError, exit_on_user_error
from fashion_clip.evaluation.evaluator import evaluate_bundle, resolve_device, split_spec
from fashion_clip.evaluation.fashionklip_files import export_fashionklip
from fashion_clip.evaluation.results_file import BASE, FINETUNED, EvaluationRecord, write_results
from fashion_clip.evaluation.results_table import print_records
from fashion_clip.models.checkpoint import load_weights

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


def identity(cfg: DictConfig) -> dict[str, str | None]:
    """What a record says was evaluated: the model preset, its weights, the data and the split."""
    return {
        "model": cfg.model.name,
        "pretrained": cfg.model.pretrained,
        "checkpoint": str(Path(cfg.ckpt_path).resolve()) if cfg.ckpt_path else None,
        "loss": training_loss(cfg.ckpt_path),
        "data": cfg.data.name,
        "split": cfg.split,
        "stage": FINETUNED if cfg.ckpt_path else BASE,
    }


def evaluate(cfg: DictConfig) -> list[EvaluationRecord]:
    """Embed the split once with the base model or a checkpoint, score each protocol, write and print."""
    if cfg.export_fashionklip and "full" not in cfg.protocol:
        raise ConfigError("export_fashionklip=true needs the full protocol: add it (protocol=[full,...])")
    spec = split_spec(cfg.data, cfg.split)
    L.seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    # a checkpoint replaces every weight, so the base weights need not be downloaded to evaluate it
    bundle = instantiate(cfg.model, **({"pretrained": None} if cfg.ckpt_path else {}))
    if cfg.ckpt_path:
        load_weights(bundle.model, cfg.ckpt_path, cfg.model.name)
    protocols = {name: instantiate(protocol) for name, protocol in cfg.protocol.items()}
    records, split = evaluate_bundle(
        bundle, spec, protocols, identity(cfg), device, cfg.batch_size, cfg.num_workers
    )
    out_dir = Path(cfg.paths.output_dir)
    write_results(records, out_dir)
    if cfg.export_fashionklip:
        full = next(r for r in records if r.protocol == "full")
        export_fashionklip(split, full.metrics, out_dir / "fashionklip", cfg.export_topk)
    print_records(records, f"{cfg.model.name} on {cfg.data.name}/{cfg.split} ({records[0].stage})")
    return records


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Console entry point (`fashion-clip-evaluate`); results land in the Hydra run directory."""
    evaluate(cfg)


if __name__ == "__main__":
    main()
