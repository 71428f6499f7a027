"""Atomic, owned outputs: unique temp names, whole-directory swaps, refusals without the overwrite switch,
nothing of a user's deleted, and a knowledge base built by rank 0 alone."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import torch.multiprocessing as mp
from helpers.gloo_group import free_port, gloo_group
from helpers.raw_catalogue import fashiongen_raw, mapping, write_json

from fashion_clip.deploy.export_files import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE
from fashion_clip.errors import UserError
from fashion_clip.ingest.shard_journal import settings_path
from fashion_clip.ingest.sources import fashiongen
from fashion_clip.ingest.sources import json_mapping as shards
from fashion_clip.knowledge import build
from fashion_clip.knowledge.fashionklip_kb import QUERIES, read_knowledge_base
from fashion_clip.utils.files import FILE_MODE, OutputExistsError, atomic_directory, atomic_output

WORLD_SIZE = 2


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root` (hidden ones too): its bytes and mtime, to show a refusal changed nothing."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def jacket_mapping(path: Path) -> Path:
    """A JSON mapping whose captions name enough concepts for a knowledge base at the default --min-count."""
    return write_json(path, [{"image_path": f"{i}.jpg", "caption": "Red leather jacket"} for i in range(6)])


# --- atomic_output -------------------------------------------------------------------------------------


def test_two_concurrent_writes_to_one_target_both_succeed(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    contents = {name: json.dumps({"writer": name, "rows": list(range(2000))}) for name in ("a", "b")}
    both_open = threading.Barrier(2)
    temps: dict[str, Path] = {}
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            with atomic_output(target) as tmp, open(tmp, "w") as f:
                temps[name] = tmp
                half = len(contents[name]) // 2
                f.write(contents[name][:half])
                f.flush()
                both_open.wait(timeout=10)  # both writers hold a half-written temp file now
                f.write(contents[name][half:])
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=write, args=(name,)) for name in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert temps["a"] != temps["b"] and all(t.parent == tmp_path for t in temps.values())
    assert target.read_text() in contents.values()
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left behind


def test_a_failed_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_output(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_written_file_gets_the_umask_mode_not_the_private_temp_mode(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "shared.txt") as tmp:
        tmp.write_text("for everyone the umask allows")
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == FILE_MODE


# --- atomic_directory ----------------------------------------------------------------------------------


def test_directory_appears_whole_and_replaces_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("first")
        assert not target.exists()  # nothing under the final name until the block succeeds
    assert snapshot(target).keys() == {"a.txt"}
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("second")
    assert {name: data for name, (data, _) in snapshot(target).items()} == {"b.txt": b"second"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # neither the temp nor the old directory is left


def test_a_failed_directory_write_leaves_the_old_one_intact(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    before = snapshot(target)
    with pytest.raises(RuntimeError, match="crash"), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("crash")
    assert snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# --- refusals ------------------------------------------------------------------------------------------


def test_knowledge_base_is_replaced_only_with_overwrite_and_never_over_a_users_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = jacket_mapping(tmp_path / "map.json")
    out = tmp_path / "kb"
    out.mkdir()  # an empty directory has nothing to lose: no switch needed
    build.main(["--data", str(data), "--out", str(out)])
    before = snapshot(out)

    with pytest.raises(SystemExit) as refused:
        build.main(["--data", str(data), "--out", str(out), "--min-count", "6"])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert str(out) in error and "--overwrite" in error
    assert snapshot(out) == before

    build.main(["--data", str(data), "--out", str(out), "--min-count", "6", "--overwrite"])
    assert read_knowledge_base(out).concepts

    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    with pytest.raises(SystemExit) as refused:
        build.main(["--data", str(data), "--out", str(out), "--overwrite"])
    assert refused.value.code == 2
    assert "notes.txt" in capsys.readouterr().err
    assert snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fashiongen_json_is_replaced_only_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fashiongen_raw(tmp_path, "valid", products=2)
    argv = ["--root", str(tmp_path), "--split", "valid", "--out", str(tmp_path / "maps" / "valid.json")]
    assert fashiongen.main(argv) == 0
    before = snapshot(tmp_path / "maps")
    capsys.readouterr()

    assert fashiongen.main(argv) == 2
    printed = capsys.readouterr().out
    assert str(tmp_path / "maps" / "valid.json") in printed and "--overwrite" in printed
    assert snapshot(tmp_path / "maps") == before

    assert fashiongen.main([*argv, "--overwrite"]) == 0
    assert json.loads((tmp_path / "maps" / "valid.json").read_text())


def test_finished_split_is_rewritten_with_other_options_only_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    seeds = write_json(tmp_path / "clip_dataset_valid.json", mapping(tmp_path, products=6))
    out = tmp_path / "out"
    argv = ["--json", str(seeds), "--output-dir", str(out), "--shard-size", "4", "--no-progress"]
    assert shards.main(argv) == 0
    assert shards.main(argv) == 0  # the same input and options: rewritten as before, same bytes
    before = snapshot(out)
    capsys.readouterr()

    assert shards.main([*argv, "--shard-size", "5"]) == 2
    printed = capsys.readouterr().out
    assert str(out / "val") in printed and "shard_size" in printed and "--overwrite" in printed
    assert snapshot(out) == before

    assert shards.main([*argv, "--shard-size", "5", "--overwrite"]) == 0
    assert snapshot(out) != before


def test_every_split_is_checked_before_the_first_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    seeds = write_json(tmp_path / "clip_dataset_valid.json", mapping(tmp_path, products=12))
    out = tmp_path / "out"
    argv = ["--json", str(seeds), "--output-dir", str(out), "--test-fraction", "0.5", "--no-progress"]
    assert shards.main(argv) == 0
    settings_path(out / "test", "clip_dataset_valid_test").unlink()  # as if written by an earlier version
    before = snapshot(out)
    capsys.readouterr()

    assert shards.main(argv) == 2
    assert "no record of its input and options" in capsys.readouterr().out
    assert snapshot(out) == before  # val, planned first, was not rewritten either


def fake_export(directory: Path) -> Path:
    """A directory whose manifest says an earlier export wrote it."""
    directory.mkdir()
    (directory / MANIFEST_FILE).write_text(json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}))
    (directory / "image_encoder.onnx").write_bytes(b"onnx")
    return directory


def test_onnx_export_directory_is_refused_without_overwrite_and_with_a_users_file(tmp_path: Path) -> None:
    # imported here: the spawned ranks below re-import this module, and open_clip takes them ~10 s each
    from helpers.tiny_model import TINY

    from fashion_clip.deploy.export import export_onnx_directory

    out = fake_export(tmp_path / "exported")
    before = snapshot(out)
    with pytest.raises(OutputExistsError, match=r"exported' already exists.*overwrite=true"):
        export_onnx_directory(TINY, tmp_path / "no-weights-needed.pt", out)
    assert snapshot(out) == before
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    with pytest.raises(UserError, match=r"exported'.*\(notes\.txt\).*even with overwrite=true"):
        export_onnx_directory(TINY, tmp_path / "no-weights-needed.pt", out, overwrite=True)
    assert snapshot(out) == before


# --- the knowledge base of a multi-process run ---------------------------------------------------------


def test_only_rank_zero_builds_and_every_rank_passes_the_barrier(tmp_path: Path, monkeypatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(build, "build_knowledge_base", lambda data, out: events.append("build"))
    monkeypatch.setattr(build.dist, "barrier", lambda: events.append("barrier"))
    for rank, expected in [(1, ["barrier"]), (0, ["build", "barrier"]), (None, ["build"])]:
        events.clear()
        monkeypatch.setattr(build, "group_rank", lambda rank=rank: rank)
        build.build_missing_knowledge_base("data", tmp_path / "kb")
        assert events == expected, rank

    def fail(data, out):
        raise UserError("no concept")

    events.clear()
    monkeypatch.setattr(build, "build_knowledge_base", fail)
    monkeypatch.setattr(build, "group_rank", lambda: 0)
    with pytest.raises(UserError, match="no concept"):
        build.build_missing_knowledge_base("data", tmp_path / "kb")
    assert events == ["barrier"]  # a failed build still releases the waiting ranks


def build_worker(rank: int, port: int, data: str, out: str, log_dir: str) -> None:
    """One rank of a run that needs the knowledge base: records whether it built, then reads the base."""
    real_build = build.build_knowledge_base

    def recorded(data: str, out: str) -> None:
        (Path(log_dir) / f"built-by-{rank}").touch()
        real_build(data, out)

    build.build_knowledge_base = recorded
    with gloo_group(rank, WORLD_SIZE, port):
        build.build_missing_knowledge_base(data, out)
        phrases = [c.phrase for c in read_knowledge_base(out).concepts]
    (Path(log_dir) / f"read-by-{rank}.json").write_text(json.dumps(phrases))


@pytest.mark.slow
@pytest.mark.xdist_group("local_ports")  # a free port for other processes: see conftest.py
def test_two_ranks_build_the_knowledge_base_once(tmp_path: Path) -> None:
    data = jacket_mapping(tmp_path / "map.json")
    logs = tmp_path / "logs"
    logs.mkdir()
    args = (free_port(), str(data), str(tmp_path / "kb"), str(logs))
    mp.spawn(build_worker, args=args, nprocs=WORLD_SIZE, join=True)
    assert sorted(os.listdir(logs)) == ["built-by-0", "read-by-0.json", "read-by-1.json"]
    read = [json.loads((logs / f"read-by-{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    assert read[0] == read[1] and "leather jacket" in read[0]
    assert (tmp_path / "kb" / QUERIES).is_file()
