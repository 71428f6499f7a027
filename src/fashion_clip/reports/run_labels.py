"""A run's label in the comparison: its directory under the compared runs' common root, with a multirun
job's directory (`3_data=demo,loss=siglip,model=tiny,...`: every override, nested where a value holds a
path) named by the overrides that differ between the compared jobs (`3_loss=siglip`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

SAVED_HYDRA = Path(".hydra") / "hydra.yaml"
SWEEP_CONFIG = "multirun.yaml"


@dataclass(frozen=True)
class SweepJob:
    """A multirun job: the sweep directory it ran in, its number and its overrides as typed
    (`loss=siglip`) by the key they set."""

    sweep_dir: Path
    num: int
    overrides: Mapping[str, str]


def sweep_job(run_dir: Path) -> SweepJob | None:
    """The job Hydra saved in a multirun job's directory; None for single runs and unknown directories."""
    saved = run_dir / SAVED_HYDRA
    sweep_dir = next((d for d in run_dir.parents if (d / SWEEP_CONFIG).is_file()), None)
    if sweep_dir is None or not saved.is_file():
        return None
    hydra = yaml.safe_load(saved.read_text())["hydra"]
    if hydra.get("mode") != "MULTIRUN":
        return None
    parsed = OverridesParser.create().parse_overrides(hydra["overrides"]["task"])
    return SweepJob(sweep_dir, hydra["job"]["num"], {o.key_or_group: o.input_line for o in parsed})


def swept_keys(jobs: Iterable[SweepJob]) -> set[str]:
    """Keys whose override is not the same in every job (or missing from some): what the sweeps varied."""
    jobs = list(jobs)
    keys = {key for job in jobs for key in job.overrides}
    return {key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1}


def job_name(job: SweepJob, swept: set[str]) -> str:
    """`<num>_<swept overrides>`, sorted and comma-joined like Hydra's override_dirname."""
    shown = ",".join(sorted(line for key, line in job.overrides.items() if key in swept))
    return f"{job.num}_{shown}" if shown else str(job.num)


def run_labels(run_dirs: Iterable[Path]) -> dict[Path, str]:
    """Each run directory's label (given resolved), short enough for a table cell."""
    dirs = sorted(set(run_dirs))
    jobs = {d: job for d in dirs if (job := sweep_job(d)) is not None}
    places = {d: jobs[d].sweep_dir if d in jobs else d for d in dirs}
    root = Path(os.path.commonpath(list(places.values())))
    swept = swept_keys(jobs.values())
    labels = {}
    for d in dirs:
        if d in jobs:
            sweep_dir = jobs[d].sweep_dir
            prefix = "" if sweep_dir == root else f"{sweep_dir.relative_to(root)}/"
            labels[d] = prefix + job_name(jobs[d], swept)
        else:
            labels[d] = str(d.relative_to(root)) if d != root else d.name
    return labels
