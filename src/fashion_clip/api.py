"""Run everything from Python or a notebook as the CLI would: compose a config, train, evaluate, load a model.

cfg = api.compose("train", ["model=tiny", "trainer.max_epochs=1"])
run = api.train(cfg)  # run.result: {"before": {...}, "after": {...}}; run.run_dir: its outputs
bundle = api.load_model("tiny", ckpt_path=run.run_dir / "checkpoints" / "last.ckpt")
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from fashion_clip import training
from fashion_clip.config import CONFIG_DIR
from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.errors import ConfigError
from fashion_clip.evaluation import run as evaluation_run
from fashion_clip.models.factory import ClipBundle
from fashion_clip.records import EvaluationRecord
from fashion_clip.utils.files import atomic_output
from fashion_clip.utils.launch import from_launch_dir

T = TypeVar("T")


@dataclass(frozen=True)
class RunResult(Generic[T]):
    """What a task returned and the run directory it wrote its outputs to."""

    run_dir: Path
    result: T


def compose_with_hydra(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """`conf/<config_name>.yaml` with `overrides` and its `hydra` node as Hydra composes them, clearing an
    earlier composition so any number of configs can be composed in one process."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name=config_name):
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def compose(
    config_name: str = "train", overrides: Sequence[str] = (), root_dir: str | Path | None = None
) -> DictConfig:
    """The config a CLI run of `fashion_clip.<config_name>` with `overrides` would get, launched from
    `root_dir` (default: the current directory): its run directory is fixed now, as
    `outputs/<task_name>/runs/<date>_<time>/` there, and `paths` are resolved so the config stays
    valid whatever is composed next. The `hydra` node is kept; `train` and `evaluate` set it for the run.
    """
    try:
        cfg = compose_with_hydra(config_name, overrides)
    except HydraException as exc:
        raise ConfigError(
            f"{exc}\n(composing conf/{config_name}.yaml with overrides {list(overrides)})"
        ) from exc
    root = Path(root_dir or Path.cwd()).absolute()
    with open_dict(cfg.hydra):
        cfg.hydra.runtime.cwd = str(root)
        cfg.hydra.run.dir = str(from_launch_dir(root, cfg.hydra.run.dir))
        cfg.hydra.runtime.output_dir = cfg.hydra.run.dir
    HydraConfig.instance().set_config(cfg)
    if "paths" in cfg:
        OmegaConf.resolve(cfg.paths)
    return cfg


def save_run_config(cfg: DictConfig, job: DictConfig, out_dir: Path) -> None:
    """config.yaml, hydra.yaml and overrides.yaml in the run's `.hydra/` as a CLI run saves them, so
    reports and `evaluate` read a run from Python like any other (its loss, its sweep overrides)."""
    saved = {
        "config.yaml": job,
        "hydra.yaml": OmegaConf.masked_copy(cfg, "hydra"),
        "overrides.yaml": cfg.hydra.overrides.task,
    }
    for name, node in saved.items():
        with atomic_output(out_dir / cfg.hydra.output_subdir / name) as tmp:
            OmegaConf.save(node, tmp)


def run(cfg: DictConfig, task: Callable[[DictConfig], T]) -> RunResult[T]:
    """`task` on a config from `compose`, in its run directory as Hydra runs it for the CLI: the Hydra
    config set (`${hydra:...}`, the preset names in reports), `.hydra/` saved, `task` given the config
    without its `hydra` node."""
    if "hydra" not in cfg:
        raise ConfigError("the config has no `hydra` node: compose it with fashion_clip.api.compose(...)")
    HydraConfig.instance().set_config(cfg)
    job = copy.deepcopy(cfg)
    with open_dict(job):
        del job["hydra"]
    out_dir = Path(cfg.hydra.runtime.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, job, out_dir)
    return RunResult(out_dir, task(job))


def train(cfg: DictConfig) -> RunResult[dict[str, dict[str, float]]]:
    """`python -m fashion_clip.train`: the named protocols' scores before and after fine-tuning."""
    return run(cfg, training.train)


def evaluate(cfg: DictConfig) -> RunResult[list[EvaluationRecord]]:
    """`python -m fashion_clip.evaluate` (config `evaluate`): one record per protocol."""
    return run(cfg, evaluation_run.evaluate)


def load_model(
    model: str = "tiny",
    ckpt_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    trust_checkpoint: bool = False,
) -> ClipBundle:
    """The `model=<model>` preset's model (in eval mode), train/val transforms and tokenizer, with a
    checkpoint's weights when given, for embedding images and texts ad hoc; `overrides` as for `compose`
    (`model.pretrained=null`); `trust_checkpoint` as the CLI's option of that name."""
    cfg = compose("evaluate", [f"model={model}", *overrides])
    bundle = load_clip(
        cfg.model, ckpt_path, root=cfg.paths.root_dir, trust_checkpoint=trust_checkpoint
    ).bundle
    bundle.model.eval()
    return bundle
