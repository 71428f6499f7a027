"""A speed-up of our trainer against our own default, in one process with single steps interleaved.

Whole runs minutes apart drift by 10-25% on a shared machine, more than the speed-ups under test. Here
the default and the sped-up model take turns on the same batch, one step each, alternating which goes
first, so drift hits both alike and the median of the per-round ratios is the speed-up's own size.
Each row runs in a fresh process (`python speedup_ab.py ROW WARMUP ROUNDS` prints its JSON): dynamo
shares compiled code between models of one process, and a second model's other shapes would recompile it
with dynamic shapes, slower than either model's own kernels.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from fresh_process import json_from_fresh_process
from model_step import build_step, timed_step
from training_rows import ROWS, SMOKE_ROW, TrainingRow


def interleaved_speedup(row: TrainingRow, warmup: int, rounds: int) -> dict[str, Any]:
    """Median step seconds of the default and of the row's overrides, and the median per-round ratio
    (default / sped-up: above 1, the speed-up helps); warm-up rounds (compilation) are not timed."""
    default, _ = build_step(row)
    faster, _ = build_step(row, row.ours_overrides)
    for _ in range(warmup):
        default()
        faster()
    pairs = []
    for round_index in range(rounds):
        if round_index % 2:
            sped_up = timed_step(faster, row.device)
            plain = timed_step(default, row.device)
        else:
            plain = timed_step(default, row.device)
            sped_up = timed_step(faster, row.device)
        pairs.append((plain, sped_up))
    ratios = [plain / sped_up for plain, sped_up in pairs]
    return {
        "row": row.name,
        "model": row.model,
        "precision": row.precision,
        "batch": row.batch_size,
        "overrides": list(row.ours_overrides),
        "rounds": rounds,
        "default_step_s": statistics.median(plain for plain, _ in pairs),
        "sped_up_step_s": statistics.median(sped_up for _, sped_up in pairs),
        "speedup": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
    }


def speedup_row(row: TrainingRow, warmup: int, rounds: int) -> dict[str, Any]:
    """interleaved_speedup of the row in a fresh process, so no other model's compiled code is in the way."""
    command = [sys.executable, str(Path(__file__).resolve()), row.name, str(warmup), str(rounds)]
    return json_from_fresh_process(command)


if __name__ == "__main__":
    name, warmup_rounds, timed_rounds = sys.argv[1:4]
    (chosen,) = [row for row in (*ROWS, SMOKE_ROW) if row.name == name]
    print(json.dumps(interleaved_speedup(chosen, int(warmup_rounds), int(timed_rounds))))
