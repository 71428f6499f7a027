"""Files named inside data files (a split's manifest.json, an ONNX export's model.json) are plain names in
that file's folder: a crafted name never runs a command nor reads outside the folder, and URLs are taken
from the user's own config or command line only (issue 25)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.entry_in_process import run_entry
from helpers.shard_samples import jpeg_bytes, shard_sample, write_split
from helpers.tiny_model import TINY, random_tiny

from fashion_clip.data.manifest import MANIFEST_NAME, read_manifest
from fashion_clip.data.raw_samples import raw_samples
from fashion_clip.data.shard_spec import resolve_shards
from fashion_clip.deploy import onnx_export
from fashion_clip.deploy.export_files import (
    FILE_KEYS,
    MANIFEST_FILE,
    PREPROCESS_FILE,
    read_export,
    write_json,
)
from fashion_clip.deploy.runtime import OnnxClip
from fashion_clip.errors import UserError
from fashion_clip.models.factory import create_tokenizer
from fashion_clip.utils.files import UnsafeNameError, plain_file_name

FIRST_SHARD = "fixture-000000.tar"
PLAIN = ["shard-000001.tar", FIRST_SHARD, "train_0.tar", "shard..tar", "robe-été.tar", "-", "a b.tar"]
# name -> what the message says is wrong with it
NOT_PLAIN = {
    "": "is empty",
    "../other/shard.tar": "is a path",
    "/etc/passwd": "is a path",
    "sub/shard.tar": "is a path",
    "sub\\shard.tar": "is a path",
    "..": "names a folder",
    ".": "names a folder",
    "pipe:touch marker; cat shard.tar": "is a URL (it starts with pipe:)",
    "s3://bucket/x.tar": "is a URL (it starts with s3:)",
    "https://host/x.tar": "is a URL (it starts with https:)",
    "file:shard.tar": "is a URL (it starts with file:)",
    "C:\\shards\\x.tar": "is a URL (it starts with C:)",
    "shard\x00.tar": "holds a control character",
    "shard\n.tar": "holds a control character",
    None: "is a NoneType, not a file name",
    7: "is a int, not a file name",
}


@pytest.mark.parametrize("name", PLAIN)
def test_plain_file_names_are_accepted(name: str) -> None:
    assert plain_file_name(name, "/data/val/manifest.json", "shards[0].name", "fix it") == name


@pytest.mark.parametrize(("name", "problem"), NOT_PLAIN.items(), ids=[repr(n) for n in NOT_PLAIN])
def test_every_other_form_is_refused_naming_file_key_value_and_fix(name: object, problem: str) -> None:
    with pytest.raises(UnsafeNameError) as refused:
        plain_file_name(name, "/data/val/manifest.json", "shards[3].name", "write the split again")
    message = str(refused.value)
    assert isinstance(refused.value, UserError)  # the CLIs print it and exit 2
    for part in ("'/data/val/manifest.json'", f"shards[3].name={name!r}", problem, "write the split again"):
        assert part in message


@pytest.fixture
def split(tmp_path: Path) -> Path:
    """A real split written by the shard writer: two shards of four samples and their manifest."""
    samples = [shard_sample(i, jpeg_bytes((30 * i, 0, 0)), f"p{i}") for i in range(8)]
    return write_split(tmp_path / "split", samples, shard_size=4)


def rename_first_shard(split: Path, name: str) -> None:
    """Rewrite the manifest as an attacker would: the first shard listed under `name`."""
    manifest = json.loads((split / MANIFEST_NAME).read_text())
    manifest["shards"][0]["name"] = name
    (split / MANIFEST_NAME).write_text(json.dumps(manifest))


def crafted_names(tmp_path: Path) -> list[str]:
    """A command, a path up and out, an absolute path and a URL, each naming a real shard where it can."""
    other = tmp_path / "other"
    other.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "split" / FIRST_SHARD, other / FIRST_SHARD)
    return [
        f"pipe:touch {tmp_path / 'marker'}; cat {FIRST_SHARD}",
        f"../other/{FIRST_SHARD}",
        str(other / FIRST_SHARD),
        "s3://bucket/x.tar",
    ]


def test_every_shard_of_a_manifest_resolves_inside_its_folder(
    split: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [Path(url).parent for url in resolve_shards(str(split))] == [split, split]
    monkeypatch.chdir(split)  # `data.test=.`: the folder adds nothing in front of the names
    assert resolve_shards(".") == [s.name for s in read_manifest(".").shards]


@pytest.mark.parametrize("case", range(4), ids=["pipe", "dotdot", "absolute", "s3"])
def test_a_crafted_manifest_is_refused_before_anything_is_read(
    split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: int
) -> None:
    name = crafted_names(tmp_path)[case]
    rename_first_shard(split, name)
    monkeypatch.chdir(split)
    with pytest.raises(UnsafeNameError, match="manifest.json'.* shards\\[0\\].name=") as refused:
        resolve_shards(".", "test")
    assert repr(name) in str(refused.value)
    assert not (tmp_path / "marker").exists()


def test_a_file_named_like_a_command_matched_by_a_glob_is_read_as_a_file(
    split: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = f"pipe:touch marker; cat {FIRST_SHARD}"  # a legal file name, ending in .tar
    shutil.copy(split / FIRST_SHARD, split / command)
    shutil.copy(split / FIRST_SHARD, split / "-")  # WebDataset reads stdin for a bare `-`
    monkeypatch.chdir(split)
    assert resolve_shards("-") == ["./-"]
    urls = resolve_shards("*.tar")
    assert f"./{command}" in urls
    samples = list(raw_samples([*urls, "./-"]))  # how training and evaluation open shards
    assert len(samples) == 4 + 8 + 4  # the file's own samples, the split's, and `-`'s: no command, no stdin
    assert not (split / "marker").exists()


def test_the_users_own_urls_are_still_resolved_as_given() -> None:
    spec = "pipe:curl -s https://example.com/shards/train-{000000..000002}.tar"
    assert resolve_shards(spec) == [
        f"pipe:curl -s https://example.com/shards/train-00000{i}.tar" for i in range(3)
    ]
    urls = ["https://host/a.tar", "s3://bucket/b-{0..1}.tar", "gs://bucket/c.tar"]
    assert resolve_shards(urls) == [urls[0], "s3://bucket/b-0.tar", "s3://bucket/b-1.tar", urls[2]]


@pytest.mark.slow
@pytest.mark.parametrize("case", range(4), ids=["pipe", "dotdot", "absolute", "s3"])
def test_evaluate_refuses_a_crafted_manifest_and_runs_nothing(split: Path, tmp_path: Path, case: int) -> None:
    name = crafted_names(tmp_path)[case]
    rename_first_shard(split, name)
    done = run_entry(
        "evaluate",
        "model=tiny",
        "data.test=.",
        "protocol=[full]",
        "evaluation.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=split,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"{MANIFEST_NAME}': shards[0].name={name!r}" in done.stderr, done.stderr[-3000:]
    assert "write the split again" in done.stderr
    assert not (tmp_path / "marker").exists()


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX export's model.json, preprocess.json and tokenizer.json written by the exporter's own
    functions; the towers are left out, as names are checked before any file is opened."""
    directory = tmp_path_factory.mktemp("export")
    model, fingerprint = random_tiny(0), "0" * 64
    write_json(directory / PREPROCESS_FILE, onnx_export.preprocess_spec(model, fingerprint))
    manifest = onnx_export.manifest(model, create_tokenizer(TINY), TINY, fingerprint, directory, {})
    write_json(directory / MANIFEST_FILE, manifest)
    return directory


def tampered(export: Path, key: str, name: str, out: Path) -> Path:
    """A copy of the export whose model.json gives `name` at dotted `key`."""
    copy = shutil.copytree(export, out)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    *parents, last = key.split(".")
    target = manifest
    for part in parents:
        target = target[part]
    target[last] = name
    write_json(copy / MANIFEST_FILE, manifest)
    return copy


def test_an_exported_model_json_names_plain_files(export: Path) -> None:
    files = read_export(export).files
    assert files == {
        "image_encoder.file": "image_encoder.onnx",
        "text_encoder.file": "text_encoder.onnx",
        "preprocess": PREPROCESS_FILE,
        "tokenizer.file": "tokenizer.json",
    }


@pytest.mark.parametrize("key", FILE_KEYS)
@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "https://host/model.onnx"])
def test_the_runtime_refuses_a_model_json_naming_files_elsewhere(
    export: Path, tmp_path: Path, key: str, name: str
) -> None:
    crafted = tampered(export, key, name, tmp_path / "crafted")
    with pytest.raises(UnsafeNameError) as refused:
        OnnxClip(crafted)
    assert f"{MANIFEST_FILE}': {key}={name!r}" in str(refused.value)
    assert "export the model again" in str(refused.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd"])
def test_index_refuses_an_export_whose_model_json_names_a_file_elsewhere(
    export: Path, split: Path, tmp_path: Path, name: str
) -> None:
    crafted = tampered(export, "image_encoder.file", name, tmp_path / "crafted")
    done = run_entry(
        "index",
        f"onnx={crafted}",
        f"source={split}",
        f"out={tmp_path / 'index.pt'}",
        "evaluation.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"{MANIFEST_FILE}': image_encoder.file={name!r}" in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "index.pt").exists()


def test_a_journal_naming_a_file_outside_its_folder_starts_afresh(tmp_path: Path) -> None:
    from fashion_clip.ingest.shard_journal import read_journal

    entry = {"shard": {"name": "/dev/zero", "samples": 1, "sha256": "0" * 64}, "consumed": 1, "skipped": 0}
    (tmp_path / "journal.json").write_text(json.dumps({"key": "k", "entries": [entry], "skipped": []}))
    assert read_journal(tmp_path / "journal.json", "k").entries == []
    entry["shard"]["name"] = "shard-000000.tar"
    (tmp_path / "journal.json").write_text(json.dumps({"key": "k", "entries": [entry], "skipped": []}))
    assert [e.shard.name for e in read_journal(tmp_path / "journal.json", "k").entries] == [
        "shard-000000.tar"
    ]
