"""`benchmarks/bench.py`: the smoke path writes its files and tables; the harness's parts are exact.

No speed is asserted anywhere: benchmarks measure, tests only prove the harness works.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers.bench_smoke import BENCH_DIR, smoke_run

sys.path.insert(0, str(BENCH_DIR))

from bench import parse_args, planned_rows  # noqa: E402
from bench_catalogue import bench_shards  # noqa: E402
from mfu import counted_flops, matmul_peak_gflops, mfu  # noqa: E402
from openclip_runner import openclip_command, shard_urls, step_seconds_from_log  # noqa: E402
from ours_runner import ours_command  # noqa: E402
from peak_memory import peak_rss_mib  # noqa: E402
from training_compare import best_run, ratio_fields, repeat_ratios, timed_rate  # noqa: E402
from training_rows import ROWS, SMOKE_ROW, skip_reason, steps_for_machine  # noqa: E402

from fashion_clip.data.manifest import read_manifest  # noqa: E402

# a line open_clip_train 3.3.0 logged for FashionCLIP-Tiny, batch 64, on this project's machine
OPENCLIP_LINE = (
    "2026-11-23,12:30:49 | INFO | Train Epoch: 0 [ 128/1152 (11%)] Data (t): 0.010 Batch (t): 2.462, "
    "25.9975/s, 25.9975/s/gpu LR: 0.000001 Logit Scale: 14.286 Contrastive_loss: 4.3107 (4.3345) Loss: 4.3107"
)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """One `bench.py --smoke` run in a fresh process, as `make bench` would start it."""
    root = tmp_path_factory.mktemp("bench")
    return smoke_run("bench.py", root)


@pytest.mark.slow
def test_smoke_results_have_every_section(smoke_results: tuple[dict, str]) -> None:
    results, _ = smoke_results
    assert set(results) == {"meta", "training", "speedups", "pipeline", "mfu", "eval"}
    meta = results["meta"]
    assert {"date", "command", "machine", "load_avg_start", "load_avg_end", "versions"} <= set(meta)
    assert meta["versions"]["ours"]["torch"] == torch.__version__.split("+")[0]
    assert meta["versions"]["open_clip_train"] is None
    (row,) = results["training"]
    assert row["row"] == SMOKE_ROW.name and row["batch"] == SMOKE_ROW.batch_size
    assert row["ours"]["samples_per_s"] > 0 and len(row["ours"]["runs"]) == 1
    assert row["open_clip_train"]["samples_per_s"] is None and row["ratio"] is None
    assert row["repeat_ratios"] == [] and row["ratio_min"] is None and row["ratio_max"] is None
    assert row["open_clip_train"]["note"].startswith("not run: ")
    (speedup,) = results["speedups"]
    assert speedup["row"] == SMOKE_ROW.name and speedup["overrides"] == list(SMOKE_ROW.ours_overrides)
    assert speedup["rounds"] == 2 and speedup["speedup_min"] <= speedup["speedup"] <= speedup["speedup_max"]
    assert speedup["default_step_s"] > 0 and speedup["sped_up_step_s"] > 0
    (pipeline,) = results["pipeline"]
    assert pipeline["workers"] == 1 and pipeline["image_px"] == 64
    assert pipeline["headroom"] == pytest.approx(
        pipeline["pipeline_samples_per_s"] / pipeline["model_samples_per_s"]
    )
    (mfu_row,) = results["mfu"]
    assert mfu_row["gflops_per_sample"] > 0 and mfu_row["open_clip_train_mfu"] is None
    assert mfu_row["ours_mfu"] == pytest.approx(
        mfu_row["gflops_per_sample"] * row["ours"]["samples_per_s"] / mfu_row["peak_gflops"]
    )
    assert [r["gallery"] for r in results["eval"]] == [256]


@pytest.mark.slow
def test_smoke_run_keeps_no_checkpoint(smoke_results: tuple[dict, str], tmp_path_factory) -> None:
    """Benchmark runs train models but must not leave their weights behind (GBs per ViT-B/32 row)."""
    bench_root = tmp_path_factory.getbasetemp()
    assert list(bench_root.glob("bench*/out/runs/*/ours-*/stdout.log"))
    assert not list(bench_root.glob("bench*/**/*.ckpt"))


@pytest.mark.slow
def test_smoke_markdown_tables_are_whole(smoke_results: tuple[dict, str]) -> None:
    _, text = smoke_results
    sections = (
        "Training throughput",
        "Our speed-ups, interleaved in one process",
        "Data pipeline alone",
        "MFU",
    )
    for title in sections:  # each table: header, separator and the smoke row
        section = text.split(f"## {title}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert len(section) == 3
        assert len({line.count("|") for line in section}) == 1
    assert "not run: --smoke runs our trainer only" in text


def test_open_clip_train_log_gives_each_step_seconds() -> None:
    text = "\n".join(
        [OPENCLIP_LINE, "2026 | INFO | Start epoch 0", OPENCLIP_LINE.replace("25.9975", "32.0000")]
    )
    assert step_seconds_from_log(text, 64) == pytest.approx([64 / 25.9975, 2.0])


def test_timed_rate_skips_warmup_and_needs_every_step() -> None:
    row = replace(SMOKE_ROW, batch_size=10, warmup=2, steps=3)
    rate = timed_rate([100.0, 50.0, 1.0, 2.0, 2.0, 99.0], row)
    assert rate == {"samples_per_s": pytest.approx(30 / 5.0), "median_step_s": 2.0, "warmup_s": 150.0}
    with pytest.raises(RuntimeError, match="only 4 of the 5 steps"):
        timed_rate([1.0] * 4, row)


def test_best_run_keeps_the_fastest_but_never_hides_a_failure() -> None:
    runs = [{"samples_per_s": 3.0}, {"samples_per_s": 5.0}]
    assert best_run(runs)["samples_per_s"] == 5.0 and best_run(runs)["runs"] == runs
    failed = {"samples_per_s": None, "note": "failed: exit 1"}
    assert best_run([*runs, failed])["note"] == "failed: exit 1"


def test_ratio_spread_pairs_the_runs_of_each_repeat() -> None:
    ours = [{"samples_per_s": 110.0}, {"samples_per_s": 100.0}]
    theirs = [{"samples_per_s": 100.0}, {"samples_per_s": 125.0}]
    fields = ratio_fields(best_run(ours), best_run(theirs))
    assert fields["ratio"] == pytest.approx(110 / 125), "the best runs' ratio"
    assert fields["repeat_ratios"] == pytest.approx([1.1, 0.8])
    assert (fields["ratio_min"], fields["ratio_max"]) == pytest.approx((0.8, 1.1))
    failed = {"samples_per_s": None, "note": "failed: exit 1"}
    assert repeat_ratios([*ours, failed], [*theirs, {"samples_per_s": 90.0}]) == pytest.approx([1.1, 0.8])
    assert ratio_fields(best_run(ours), {"samples_per_s": None, "note": "not run"})["ratio_min"] is None


def test_bf16_rows_run_more_steps_only_where_bf16_is_native() -> None:
    by_name = {row.name: row for row in ROWS}
    native = {name: steps_for_machine(row, native_bf16=True) for name, row in by_name.items()}
    assert native["tiny-bf16"].steps >= 20 and native["vitb32-bf16"].steps >= 10
    assert native["tiny-bf16"].warmup == by_name["tiny-fp32"].warmup
    assert native["vitb32-bf16"].warmup == by_name["vitb32-fp32"].warmup
    assert all(native[name] == row for name, row in by_name.items() if "bf16" not in name)
    assert all(steps_for_machine(row, native_bf16=False) == row for row in ROWS)


def test_command_line_steps_win_over_the_machine_choice() -> None:
    plan = planned_rows(parse_args(["--rows", "tiny-bf16", "vitb32-bf16"]), cuda=False, native_bf16=True)
    assert [(row.warmup, row.steps) for row, _ in plan] == [(5, 20), (2, 10)]
    args = parse_args(["--rows", "tiny-bf16", "--steps", "4", "--warmup", "1"])
    ((row, reason),) = planned_rows(args, cuda=False, native_bf16=True)
    assert (row.warmup, row.steps, reason) == (1, 4, None)


def test_rows_skipped_only_where_they_cannot_or_should_not_run() -> None:
    by_name = {row.name: row for row in ROWS}
    assert skip_reason(by_name["vitb16-fp16"], False, cuda=False, native_bf16=True).startswith(
        "not run: no GPU"
    )
    assert skip_reason(by_name["vitb16-fp16"], False, cuda=True, native_bf16=False) is None
    assert "--rows vitb32-bf16" in skip_reason(by_name["vitb32-bf16"], False, cuda=False, native_bf16=False)
    assert skip_reason(by_name["vitb32-bf16"], True, cuda=False, native_bf16=False) is None
    assert skip_reason(by_name["vitb32-bf16"], False, cuda=False, native_bf16=True) is None
    assert "--rows tiny-bf16" in skip_reason(by_name["tiny-bf16"], False, cuda=False, native_bf16=False)
    assert skip_reason(by_name["tiny-fp32"], False, cuda=False, native_bf16=False) is None


def test_both_trainers_get_the_same_settings(tmp_path: Path) -> None:
    row = replace(next(r for r in ROWS if r.name == "vitb32-fp32"), warmup=1, steps=2)
    shards = bench_shards(tmp_path, 32, row.samples_needed(2), 2)
    theirs = openclip_command(Path("py"), row, shards, 2)
    option = {flag: theirs[i + 1] for i, flag in enumerate(theirs) if flag.startswith("--")}
    assert option["--model"] == "ViT-B-32" and option["--batch-size"] == "32" and option["--workers"] == "2"
    assert option["--precision"] == "fp32" and option["--train-num-samples"] == str(3 * 32)
    assert option["--train-data"] == shard_urls(shards) and "--siglip" not in theirs
    assert shard_urls(shards).split("::") == [str(shards / s.name) for s in read_manifest(shards).shards]
    ours = ours_command(row, shards, 2, tmp_path / "run")
    for override in ("model=vitb32", "data.batch_size=32", "data.num_workers=2", "trainer.precision=32-true"):
        assert override in ours
    assert f"data.train={shards}" in ours and "trainer.max_steps=3" in ours
    for variant in (r for r in ROWS if r.ours_overrides):
        assert ours_command(variant, shards, 2, tmp_path)[-len(variant.ours_overrides) :] == list(
            variant.ours_overrides
        )
    siglip = next(r for r in ROWS if r.loss == "siglip")
    assert "--siglip" in openclip_command(Path("py"), siglip, shards, 2) and "loss=siglip" in ours_command(
        siglip, shards, 2, tmp_path
    )


@pytest.mark.slow
def test_speed_up_rows_change_only_what_they_name(compose_train) -> None:
    plain = {row.name: compose_train(f"model={row.preset}") for row in ROWS if not row.ours_overrides}
    variants = [row for row in ROWS if row.ours_overrides]
    assert {"tiny-fp32-unfused", "tiny-fp32-compile", "vitb32-fp32-compile"} <= {row.name for row in variants}
    for row in variants:
        base = next(name for name, cfg in plain.items() if cfg.model.name == row.model)
        cfg = compose_train(f"model={row.preset}", *row.ours_overrides)
        changed = {
            f"{group}.{key}"
            for group in ("model", "optimizer")
            for key in set(cfg[group]) | set(plain[base][group])
            if cfg[group].get(key) != plain[base][group].get(key)
        }
        assert changed == {override.lstrip("+").split("=")[0] for override in row.ours_overrides}


def test_flop_count_matches_a_linear_layer_by_hand() -> None:
    layer = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16)
    # forward 2*B*in*out; backward computes the weight gradient only (x needs none): 2*B*in*out again
    assert counted_flops(lambda: layer(x).sum().backward()) == 2 * (2 * 4 * 16 * 8)


def test_mfu_is_achieved_over_peak_flops() -> None:
    assert mfu(2e9, 10.0, 40.0) == pytest.approx(0.5)
    assert mfu(2e9, None, 40.0) is None
    assert mfu(2e9, 10.0, None) is None, "no peak (emulated bf16): no MFU"
    assert matmul_peak_gflops("fp32", "cpu", 64, window_seconds=0.01, windows=2) > 0


@pytest.mark.slow
def test_peak_memory_is_the_subprocess_own_high_water_mark() -> None:
    """A fresh interpreter (as each benchmark size runs) reports its own peak, not its parent's."""
    script = (
        "import torch; from peak_memory import peak_rss_mib; before = peak_rss_mib(); "
        "block = torch.ones(64 * 2**20 // 4); print(before, peak_rss_mib())"
    )
    parent_block = torch.ones(256 * 2**20 // 4)  # the parent's peak is now at least 256 MiB higher
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=BENCH_DIR, check=True, capture_output=True, text=True
    )
    before, after = map(float, done.stdout.split())
    assert after - before >= 48
    assert before < peak_rss_mib() - 128, "the child must not inherit the parent's peak"
    del parent_block
