"""Full-protocol evaluation time and peak memory versus gallery size, on this machine's CPU (or GPU).

Run: .venv/bin/python benchmarks/eval_scaling.py --sizes 1000 4000 10000 16000 32000
Each size runs in a fresh process so its peak RSS is its own. Features are random unit vectors (D=512,
one image and one caption per product, as Fashion-Gen's test split): the protocol's cost does not depend
on what the vectors are. Writes outputs/bench/eval_scaling.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from fresh_process import json_from_fresh_process
from peak_memory import peak_rss_mib

from fashion_clip.evaluation.full import full_protocol
from fashion_clip.retrieval.embedding import CaptionRecord, EmbeddedSplit, ImageRecord

OUT = Path("outputs/bench")


def rss_mib() -> float:
    """Current resident set size, to separate the features' memory from the protocol's."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def random_split(n: int, dim: int) -> EmbeddedSplit:
    """n products with one image and one caption each."""
    images = [ImageRecord(str(i), str(i), None, "", "") for i in range(n)]
    captions = [CaptionRecord(str(i), f"caption {i}") for i in range(n)]
    features = [F.normalize(torch.randn(n, dim), dim=-1) for _ in range(2)]
    return EmbeddedSplit(features[0], images, features[1], captions)


def measure(n: int, dim: int, chunk: int, device: str) -> dict[str, float]:
    """One size, in this process: seconds and memory (peak RSS, and peak above the features)."""
    split = random_split(n, dim)
    before = rss_mib()
    start = time.perf_counter()
    full_protocol(split, chunk_size=chunk, device=device)
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    row = {"gallery": n, "dim": dim, "chunk": chunk, "device": device, "seconds": round(seconds, 3)}
    row |= {"peak_rss_mib": round(peak), "peak_above_features_mib": round(peak - before)}
    if device.startswith("cuda"):
        row["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def markdown(rows: list[dict]) -> str:
    """Table for BENCHMARKS.md."""
    keys = list(rows[0])
    lines = [f"| {' | '.join(keys)} |", f"|{'---|' * len(keys)}"]
    return "\n".join(lines + [f"| {' | '.join(str(r[k]) for k in keys)} |" for r in rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 10000, 16000, 32000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.dim, args.chunk, args.device)))
        return
    rows = []
    for n in args.sizes:
        command = [sys.executable, __file__, "--one", str(n), "--dim", str(args.dim)]
        command += ["--chunk", str(args.chunk), "--device", args.device]
        rows.append(json_from_fresh_process(command))
        print(rows[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "eval_scaling.json").write_text(json.dumps(rows, indent=2))
    (OUT / "eval_scaling.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
