"""Hydra/OmegaConf set-up shared by every entry point: config location, custom resolvers, console entry."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import hydra
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from fashion_clip.errors import exit_on_user_error, hydra_cli

# torch and Lightning (~7 s to import on 2 cores) are imported inside the functions that need them, when a
# run starts, so `--help`, `--cfg` and a config Hydra cannot compose answer in about a second

# the top-level conf/ directory, mapped into the package (pyproject.toml package-dir), so the repository
# layout and a non-editable install both find it
CONFIG_DIR = str(resources.files("fashion_clip.conf"))
# torch's probes of the CPU features that run bf16 matmuls natively
NATIVE_BF16_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def native_cpu_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN also reports bf16 "supported" on plain AVX-512, where it is emulated
    (a 512x768 @ 768x768 matmul: 25-28 ms in bf16 against 7-9 ms in fp32 on an Ice Lake Xeon)."""
    import torch

    return any(getattr(torch.cpu, check, lambda: False)() for check in NATIVE_BF16_CHECKS)


def auto_precision(accelerator: str = "auto") -> str:
    """16-mixed on CUDA; bf16-mixed only on CPUs with native bf16 (emulated bf16 ran 3-20x slower here)."""
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "16-mixed"
    return "bf16-mixed" if native_cpu_bf16() else "32-true"


OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)


def hydra_entry(config_name: str, task: str, job_name: str | None = None) -> Callable[[], None]:
    """The console entry point (`fashion-clip-X`, `python -m fashion_clip.X`) that runs `task` (a dotted
    path, imported only when the run starts) on `conf/<config_name>.yaml` plus the command line's overrides,
    in Hydra's run directory, after printing the composed config as a tree; user mistakes, in the config or
    found by `task`, exit 2 with the message (`exit_on_user_error`, `hydra_cli`).

    Hydra names the job (and its `<job>.log`) after the task's module, so the task is called from a
    function in `fashion_clip.<job_name>` (default: the config's name) wherever the task is defined.
    """

    def job(cfg: DictConfig) -> Any:
        run: Callable[[DictConfig], Any] = get_method(task)
        from fashion_clip.utils.config_tree import print_config_tree  # imports Lightning: see the top

        print_config_tree(cfg)
        return run(cfg)

    job.__module__ = f"fashion_clip.{job_name or config_name}"
    compose = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)
    return hydra_cli(compose(exit_on_user_error(job)))
