"""What the numbers were measured on: CPU, memory, threads, GPU, load, and library versions per side."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "torchvision", "open_clip_torch", "lightning", "webdataset", "pillow", "numpy")
VERSIONS_SCRIPT = (
    "import importlib.metadata as m, json, sys\n"
    "def v(name):\n"
    "    try:\n"
    "        return m.version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        return None\n"
    "print(json.dumps({'python': sys.version.split()[0], **{n: v(n) for n in sys.argv[1:]}}))\n"
)


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (the processor string elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ram_gib() -> float | None:
    """Physical memory, from /proc/meminfo where there is one."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    kib = next(
        int(line.split()[1]) for line in meminfo.read_text().splitlines() if line.startswith("MemTotal")
    )
    return round(kib / 2**20, 1)


def load_average() -> float:
    """1-minute load average: on shared cores, a busy machine slows every row."""
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    """The hardware facts a reader needs to compare these numbers with theirs."""
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "ram_gib": ram_gib(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def versions(python: Path | str) -> dict[str, str | None]:
    """Versions of the packages that matter for speed, as `python` (a virtualenv's interpreter) sees them."""
    done = subprocess.run(
        [str(python), "-c", VERSIONS_SCRIPT, *PACKAGES], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)
