"""Runs that differ only in their seed, summarised as mean and spread: a small gain means something only
when it exceeds the seed-to-seed spread."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from fashion_clip.reports.comparison import ComparisonRow
from fashion_clip.reports.headline import headline

JOB_NUMBER = re.compile(r"^\d+(_|$)")
SEED_OVERRIDE = re.compile(r"(^|,)seed=[^,]*")
SUMMARY_COLUMNS = ("configuration", "model", "loss", "data", "stage", "protocol", "seeds", "mean", "std")


def configuration(run: str) -> str:
    """A run's job name without its job number and seed override: what its seeds have in common."""
    name = JOB_NUMBER.sub("", PurePath(run).name)
    return SEED_OVERRIDE.sub("", name).strip(",") or "(defaults)"


@dataclass(frozen=True)
class SeedSummary:
    """The headline metric of one configuration, stage and protocol over its seeds."""

    key: tuple[str, ...]
    values: tuple[float, ...]

    def cells(self) -> list[str]:
        """Text cells in SUMMARY_COLUMNS order; the spread is the sample standard deviation."""
        std = statistics.stdev(self.values) if len(self.values) > 1 else None
        spread = "-" if std is None else f"{std:.4f}"
        return [*self.key, str(len(self.values)), f"{statistics.fmean(self.values):.4f}", spread]


def summarise_seeds(rows: Sequence[ComparisonRow]) -> list[SeedSummary]:
    """One summary per (configuration, model, loss, data, stage, protocol), in the rows' order."""
    groups: dict[tuple[str, ...], list[float]] = {}
    for row in rows:
        value = headline(row.record)
        if value is None:
            continue
        r = row.record
        key = (configuration(row.run), r.model, r.loss or "-", r.data, r.stage, r.protocol)
        groups.setdefault(key, []).append(value)
    return [SeedSummary(key, tuple(values)) for key, values in groups.items()]


def seeds_markdown(summaries: Sequence[SeedSummary]) -> str:
    """A markdown table of the summaries, or nothing when no configuration ran with several seeds."""
    if all(len(s.values) < 2 for s in summaries):
        return ""
    lines = [
        "## Mean over seeds (headline metric: mean recall, top-1 for classification, nDCG@10 for attributes)",
        "",
        f"| {' | '.join(SUMMARY_COLUMNS)} |",
        f"|{'---|' * len(SUMMARY_COLUMNS)}",
    ]
    return "\n".join(lines + [f"| {' | '.join(s.cells())} |" for s in summaries]) + "\n"
