"""Peak resident memory of this process, as the kernel's high-water mark of its own address space.

Not `getrusage(...).ru_maxrss`: Linux keeps that across `execve`, so a benchmark subprocess started
by a large parent would report the parent's peak instead of its own.
"""

from __future__ import annotations

from pathlib import Path


def peak_rss_mib() -> float:
    """VmHWM from /proc/self/status (kB), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line: peak memory is measured on Linux only")
