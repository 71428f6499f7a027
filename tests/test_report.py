"""The comparison report: gathering runs, gains over the same base model, files written, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from fashion_clip.errors import MissingInputError
from fashion_clip.records import (
    BASE,
    FINETUNED,
    EvaluationRecord,
    ResultsFileError,
    read_results,
    write_results,
)
from fashion_clip.report import main
from fashion_clip.reports.comparison import gather, report
from fashion_clip.reports.tables import before_after_rows, print_records


def record(stage: str, mean: float, loss: str | None = None, model: str = "ViT-B-32", protocol: str = "full"):
    """A record with only the metrics the report reads."""
    metrics = {"mean_recall": mean, "i2t_r1": mean / 2} if protocol != "zeroshot" else {"top1": mean}
    return EvaluationRecord(model, "laion", None, loss, "demo", "test", stage, protocol, metrics, 1.0)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A multirun-like tree: one base evaluation and two fine-tuned runs of one model, one of another."""
    root = tmp_path / "multirun"
    write_results([record(BASE, 0.2), record(BASE, 0.5, protocol="zeroshot")], root / "base")
    write_results([record(BASE, 0.25, "infonce"), record(FINETUNED, 0.5, "infonce")], root / "0_loss=infonce")
    write_results([record(FINETUNED, 0.3, "siglip")], root / "1_loss=siglip")
    write_results([record(FINETUNED, 0.9, "siglip", model="ViT-B-16")], root / "2_model=vitb16")
    return root


def test_gains_are_against_the_same_model_and_prefer_the_same_run(sweep: Path) -> None:
    rows = {(r.run, r.record.protocol, r.record.stage): r for r in gather([sweep])}
    assert rows[("0_loss=infonce", "full", FINETUNED)].gain == pytest.approx(0.5 / 0.25 - 1)
    # no base in its own run: the standalone base evaluation of the same model, data, split and protocol
    assert rows[("1_loss=siglip", "full", FINETUNED)].gain == pytest.approx(0.3 / 0.2 - 1)
    assert rows[("2_model=vitb16", "full", FINETUNED)].gain is None
    assert rows[("base", "full", BASE)].gain is None


def test_report_writes_markdown_csv_and_chart(sweep: Path, tmp_path: Path) -> None:
    written = report([sweep], tmp_path / "out")
    with written[".csv"].open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6
    finetuned = next(r for r in table if r["run"] == "0_loss=infonce" and r["stage"] == FINETUNED)
    assert (finetuned["model"], finetuned["loss"], finetuned["mean_recall"], finetuned["vs_base"]) == (
        "ViT-B-32",
        "infonce",
        "0.5000",
        "+100.0%",
    )
    assert "| 2_model=vitb16 | ViT-B-16 | siglip |" in written[".md"].read_text()
    assert written[".png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_results_round_trip(tmp_path: Path) -> None:
    records = [record(FINETUNED, 0.4, "siglip")]
    path = write_results(records, tmp_path)
    assert read_results(path) == records
    assert read_results(path)[0].source == str(path)


def test_bad_results_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "evaluation_results.json"
    bad.write_text(json.dumps({"format": "something else", "records": []}))
    with pytest.raises(ResultsFileError, match=str(bad)):
        read_results(bad)


def test_cli_exits_2_when_nothing_to_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no evaluation_results.json" in capsys.readouterr().err
    with pytest.raises(MissingInputError, match="does not exist"):
        gather([tmp_path / "missing"])


def test_seeds_of_one_configuration_are_summarised_with_their_spread(tmp_path: Path) -> None:
    root = tmp_path / "study"
    values = {"0_loss=infonce,seed=1": 0.5, "1_loss=infonce,seed=2": 0.7, "2_loss=concept,seed=1": 0.6}
    for run, mean in values.items():
        write_results([record(FINETUNED, mean, run.split(",")[0].split("=")[1])], root / run)
    write_results([record(FINETUNED, 0.9, "concept")], root / "3_loss=concept,seed=2")
    text = report([root], tmp_path / "out")[".md"].read_text()
    seeds = text.split("## Mean over seeds")[1]
    assert "| loss=infonce | ViT-B-32 | infonce | demo | finetuned | full | 2 | 0.6000 | 0.1414 |" in seeds
    assert "| loss=concept | ViT-B-32 | concept | demo | finetuned | full | 2 | 0.7500 | 0.2121 |" in seeds


def test_no_seed_table_without_repeated_seeds(sweep: Path, tmp_path: Path) -> None:
    assert "Mean over seeds" not in report([sweep], tmp_path / "out")[".md"].read_text()


def attribute_record(stage: str, colour: float, material: float) -> EvaluationRecord:
    """An attributes record: overall numbers, two fields and one skipped field."""
    overall = {
        "p1": 0.5,
        "p10": 0.4,
        "mrr": 0.6,
        "ndcg10": (colour + material) / 2,
        "map10": 0.3,
        "queries": 20,
    }
    fields = {
        "colour/values": 12,
        "colour/queries": 12,
        "colour/ndcg10": colour,
        "colour/p1": colour,
        "material/values": 8,
        "material/queries": 8,
        "material/ndcg10": material,
        "pattern/values": 1,
    }
    return EvaluationRecord(
        "tiny", None, None, "infonce", "demo", "test", stage, "attributes", overall | fields
    )


def test_attribute_search_gets_its_columns_gains_by_field_and_chart_panel(tmp_path: Path) -> None:
    write_results([attribute_record(BASE, 0.2, 0.4), attribute_record(FINETUNED, 0.5, 0.6)], tmp_path / "run")
    written = report([tmp_path / "run"], tmp_path / "out")
    with written[".csv"].open() as f:
        finetuned = next(r for r in csv.DictReader(f) if r["stage"] == FINETUNED)
    # the headline of attribute search is nDCG@10: (0.5 + 0.6) / 2 over (0.2 + 0.4) / 2
    assert (finetuned["ndcg10"], finetuned["p10"], finetuned["vs_base"]) == ("0.5500", "0.4000", "+83.3%")
    fields = written[".md"].read_text().split("## Attribute search by field")[1]
    assert "| run | tiny | finetuned | colour | 12 | 12 | 0.5000 | - | - | 0.5000 | - | +150.0% |" in fields
    assert "| run | tiny | finetuned | material | 8 | 8 | - | - | - | 0.6000 | - | +50.0% |" in fields
    assert (
        "| run | tiny | finetuned | (all) | - | 20 | 0.5000 | 0.4000 | 0.6000 | 0.5500 | 0.3000 | +83.3% |"
        in fields
    )
    assert "| run | tiny | base | pattern | 1 | - | - | - | - | - | - | - |" in fields  # skipped: 1 value
    assert written[".png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recall_columns_follow_the_configured_ks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ks_1_5_20 = ["i2t_r1", "i2t_r5", "i2t_r20", "t2i_r1", "t2i_r5", "t2i_r20", "mean_recall"]
    metrics = {name: 0.1 * (i + 1) for i, name in enumerate(ks_1_5_20)}
    evaluated = EvaluationRecord("tiny", None, None, None, "demo", "test", BASE, "full", metrics)
    write_results([evaluated], tmp_path / "run")
    with report([tmp_path / "run"], tmp_path / "out")[".csv"].open() as f:
        header = next(csv.reader(f))
    assert header[header.index("protocol") + 1 : header.index("top1")] == ks_1_5_20
    print_records([evaluated], "recall@20")
    assert "i2t_r20" in capsys.readouterr().out
    finetuned = EvaluationRecord(
        "tiny", None, "best.ckpt", None, "demo", "test", FINETUNED, "full", {"i2t_r20": 0.8}
    )
    rows = before_after_rows([evaluated, finetuned])
    assert [row[1] for row in rows] == ks_1_5_20
    assert rows[2] == ("full", "i2t_r20", "0.3000", "0.8000", "2.7x")
    assert rows[0] == ("full", "i2t_r1", "0.1000", "-", "-")


def save_sweep_job(run_dir: Path, num: int, overrides: list[str]) -> None:
    """The part of `.hydra/hydra.yaml` Hydra writes into a multirun job's directory that names the job."""
    saved = {"hydra": {"mode": "MULTIRUN", "job": {"num": num}, "overrides": {"task": overrides}}}
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(saved))


def test_sweep_jobs_are_named_by_the_overrides_that_differ_between_them(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    # a path among the overrides nests the job's directory, as Hydra's override_dirname does
    fixed = ["data=demo", "model=tiny", "paths.data_dir=/data/catalogue", "protocol=[full,sample100]"]
    for num, (loss, seed) in enumerate([("infonce", 1), ("siglip", 1), ("siglip", 2)]):
        overrides = [*fixed, f"loss={loss}", f"+seed={seed}"]
        run = sweep / f"{num}_{','.join(sorted(overrides))}"
        write_results([record(FINETUNED, 0.5, loss)], run)
        save_sweep_job(run, num, overrides)
    write_results([record(BASE, 0.2)], tmp_path / "single-run")
    assert sorted(row.run for row in gather([sweep, tmp_path / "single-run"])) == [
        "multirun/0_+seed=1,loss=infonce",
        "multirun/1_+seed=1,loss=siglip",
        "multirun/2_+seed=2,loss=siglip",
        "single-run",
    ]
