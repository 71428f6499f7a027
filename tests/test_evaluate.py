"""The evaluate entry point: base and checkpoint evaluation, named protocols, exports and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.python_subprocess import run_python
from helpers.tiny_model import save_tiny_weights

from fashion_clip.errors import ConfigError, MissingInputError
from fashion_clip.evaluation.run import evaluate
from fashion_clip.records import BASE, FINETUNED, read_results

FEW_NEGATIVES = ("protocol.sample100.num_negatives=8", "protocol.sample100.num_queries=12")


def test_base_model_gets_every_protocol(small_catalogue: Path, compose_train) -> None:
    cfg = compose_train(
        *FEW_NEGATIVES, "evaluation.num_workers=0", config_name="evaluate", data_dir=small_catalogue
    )
    records = evaluate(cfg)
    assert [r.protocol for r in records] == ["full", "sample100", "zeroshot"]
    assert {r.stage for r in records} == {BASE}
    assert read_results(Path(cfg.paths.output_dir) / "evaluation_results.json") == records
    full = records[0].metrics
    assert full["products"] == 16 and full["images"] >= 16 and 0.0 <= full["mean_recall"] <= 1.0
    assert records[1].metrics["negatives"] == 8 and records[2].metrics["classes"] >= 2


def test_checkpoint_evaluation_uses_its_weights(small_catalogue: Path, compose_train, tmp_path: Path) -> None:
    """A checkpoint must fully replace the model's weights: two evaluations of it agree exactly."""
    ckpt = save_tiny_weights(tmp_path / "weights.pt", seed=7)
    results = []
    for seed in (1, 2):  # a different random init each time, overwritten by the checkpoint
        cfg = compose_train(
            "protocol=[full]",
            f"ckpt_path={ckpt}",
            f"seed={seed}",
            "evaluation.num_workers=0",
            config_name="evaluate",
            data_dir=small_catalogue,
        )
        results.append(evaluate(cfg)[0])
    assert results[0].stage == FINETUNED and results[0].checkpoint == str(ckpt.resolve())
    assert results[0].metrics == results[1].metrics


def test_fashionklip_export_writes_all_files(small_catalogue: Path, compose_train) -> None:
    cfg = compose_train(
        "protocol=[full]",
        "export_fashionklip=true",
        "export_topk=3",
        "evaluation.num_workers=0",
        config_name="evaluate",
        data_dir=small_catalogue,
    )
    evaluate(cfg)
    out = Path(cfg.paths.output_dir) / "fashionklip"
    assert sorted(p.name for p in out.iterdir()) == [
        "image_features.jsonl",
        "predictions.jsonl",
        "query_features.jsonl",
        "scores.json",
    ]
    first = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert len(first["item_ids"]) == 3
    assert set(json.loads((out / "scores.json").read_text())) >= {"r1", "r5", "r10", "mean_recall"}


def test_export_without_full_protocol_fails_before_work(compose_train) -> None:
    cfg = compose_train("protocol=[zeroshot]", "export_fashionklip=true", config_name="evaluate")
    with pytest.raises(ConfigError, match="needs the full protocol"):
        evaluate(cfg)


def test_empty_split_is_a_clear_error(tmp_path: Path, compose_train) -> None:
    """A split whose only shard holds no readable sample."""
    import webdataset as wds

    shards = tmp_path / "broken"
    shards.mkdir()
    with wds.TarWriter(str(shards / "s-000000.tar")) as sink:
        sink.write({"__key__": "x", "jpg": b"not a jpeg", "txt": "a red dress"})
    cfg = compose_train(
        "protocol=[full]",
        f"data.test={shards}/s-000000.tar",
        "evaluation.num_workers=0",
        config_name="evaluate",
    )
    with pytest.raises(MissingInputError, match="no readable image .1 corrupt"):
        evaluate(cfg)


def test_unknown_split_names_the_choices(compose_train) -> None:
    with pytest.raises(ConfigError, match="evaluation.split='dev' is not one of train, val, test"):
        evaluate(compose_train("evaluation.split=dev", config_name="evaluate"))


@pytest.mark.slow
def test_cli_writes_results_in_the_run_dir(small_catalogue: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "cli-run"
    done = run_python(
        "-m",
        "fashion_clip.evaluate",
        "protocol=[full]",
        "evaluation.num_workers=0",
        f"paths.data_dir={small_catalogue}",
        f"hydra.run.dir={run_dir}",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mean_recall" in done.stdout
    assert read_results(run_dir / "evaluation_results.json")[0].protocol == "full"
