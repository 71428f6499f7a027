"""Bad input at every entry point: exit code 2, a message naming the key or file, and no traceback.

The first case of each entry point runs the real CLI in a subprocess, as a user would, so the console path
stays tested; the others call the same entry point in-process (`helpers.entry_in_process`: its own argv,
working directory and captured output, no interpreter start-up) with the same assertions. The README's
troubleshooting section lists the same cases. Checks that need no model or data run before either is built
(fast, and no half-done run).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.entry_in_process import run_entry
from helpers.python_subprocess import run_python
from helpers.tiny_model import save_tiny_weights

# (entry point, overrides, what the message must contain); {catalogue}, {files} are filled in per run
CASES = [
    ("train", ["data.batch_size=0"], "data.batch_size=0 is out of range"),
    ("train", ["data.batch_size=abc"], "data.batch_size='abc' is not a whole number"),
    ("train", ["trainer.max_epochs=abc"], "trainer.max_epochs='abc'"),
    ("train", ["optimizer.lr=0"], "optimizer.lr=0 is out of range: it must be above 0"),
    ("train", ["module.accumulate=0"], "module.accumulate=0"),
    ("train", ["module.recall_ks=[0,5]"], "module.recall_ks[0]=0"),
    ("train", ["protocol.full.ks=[]"], "protocol.full.ks=[] is empty"),
    ("train", ["seed=-1"], "seed=-1"),
    ("train", ["model=vitb99"], "model"),
    ("train", ["data.train={files}/nothing/*.tar"], "data.train: shard spec"),
    ("train", ["data.val={files}/empty"], "manifest"),
    ("train", ["ckpt_path={files}/missing.ckpt"], "ckpt_path"),
    ("train", ["ckpt_path={files}/garbage.ckpt"], "could not be read"),
    ("train", ["ckpt_path={files}/tiny.pt"], "not a Lightning checkpoint"),
    ("train", ["model.pretrained={files}/missing.safetensors"], "model.pretrained"),
    ("train", ["loss.positives=category"], "loss.positives='category'"),
    ("train", ["data.batching=hard"], "data.batching='hard'"),
    ("train", ["module.accumulate=3", "data.batch_size=16"], "data.batch_size=16 is not divisible"),
    (
        "train",
        ["module.accumulate=2", "trainer.accumulate_grad_batches=2"],
        "trainer.accumulate_grad_batches",
    ),
    ("evaluate", ["evaluation.split=dev"], "evaluation.split='dev'"),
    ("evaluate", ["evaluation.batch_size=0"], "evaluation.batch_size=0"),
    ("evaluate", ["ckpt_path={files}/missing.ckpt"], "ckpt_path"),
    ("evaluate", ["model=vitb32", "ckpt_path={files}/tiny.pt"], "does not fit model.name='ViT-B-32'"),
    ("evaluate", ["data.test={files}/nothing"], "data.test"),
    ("evaluate", ["protocol=[nope]"], "protocol"),
    ("wise", [], "ckpt_path= is required"),
    ("wise", ["ckpt_path={files}/tiny.pt", "alphas=[2]"], "alphas"),
    ("export", ["ckpt_path={files}/tiny.pt"], "out= is required"),
    ("export", ["ckpt_path={files}/garbage.ckpt", "out={files}/model.pt"], "could not be read"),
    ("export", ["ckpt_path={files}/tiny.pt", "out={files}/garbage.ckpt/model.pt"], "out: cannot write"),
    ("index", [], "source is not set"),
    ("index", ["source={files}/nothing"], "source="),
    ("index", ["source={catalogue}/demo/test", "out=/proc/forbidden/index.pt"], "out: cannot write"),
    ("evaluate", ["data.test={catalogue}/demo/test", "protocol.sample100.num_queries=0"], "num_queries=0"),
]


# the first case of each entry point, run in a fresh `python -m fashion_clip.<entry>`
IN_SUBPROCESS = [
    next(case for case in CASES if case[0] == entry) for entry in dict.fromkeys(e for e, _, _ in CASES)
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model's plain state dict, a file that is no checkpoint, and an empty directory."""
    root = tmp_path_factory.mktemp("bad_input")
    save_tiny_weights(root / "tiny.pt", seed=0)
    (root / "garbage.ckpt").write_bytes(b"this is not a checkpoint")
    (root / "empty").mkdir()
    return root


def case_id(case: tuple[str, list[str], str]) -> str:
    """`entry:override override`, so a failure names the case."""
    return f"{case[0]}:{' '.join(case[1]) or '(none)'}"


def as_param(case: tuple[str, list[str], str]):
    """The case with its id; the subprocess ones marked slow (~10 s of interpreter start-up each)."""
    in_subprocess = case in IN_SUBPROCESS
    marks = [pytest.mark.slow] if in_subprocess else []
    return pytest.param(*case, in_subprocess, id=case_id(case), marks=marks)


@pytest.mark.parametrize(("entry", "overrides", "message", "in_subprocess"), [as_param(c) for c in CASES])
def test_bad_input_exits_2_naming_the_key(
    entry, overrides, message, in_subprocess, files, small_catalogue, tmp_path
) -> None:
    filled = [o.format(files=files, catalogue=small_catalogue) for o in overrides]
    args = (*filled, f"paths.data_dir={small_catalogue}", f"hydra.run.dir={tmp_path / 'run'}")
    if in_subprocess:
        done = run_python("-m", f"fashion_clip.{entry}", *args, cwd=tmp_path)
    else:
        done = run_entry(entry, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert message.format(files=files) in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_the_table_has_at_least_thirty_cases_across_every_entry_point() -> None:
    assert len(CASES) >= 30
    assert {entry for entry, _, _ in CASES} == {"train", "evaluate", "wise", "export", "index"}
    assert {entry for entry, _, _ in IN_SUBPROCESS} == {entry for entry, _, _ in CASES}
