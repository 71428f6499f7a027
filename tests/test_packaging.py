"""A non-editable install runs outside the repository: configs and package data ship in the wheel."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "fashion_clip"
CONF = REPO / "conf"
# pyproject.toml's package-data patterns: (directory in the repository, its place in the package, pattern)
PACKAGE_DATA = (
    (PACKAGE, "fashion_clip", "models/model_configs/*.json"),
    (PACKAGE, "fashion_clip", "knowledge/data/*.txt"),
    (PACKAGE, "fashion_clip", "data/*.yaml"),
    (PACKAGE, "fashion_clip", "reports/*.json"),
    (CONF, "fashion_clip/conf", "**/*.yaml"),
)


def _run(*command: object, cwd: Path) -> str:
    """A command's stdout; its stderr in the failure message, so a broken build says why."""
    done = subprocess.run(list(map(str, command)), cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the project, so the build leaves nothing in the working tree."""
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for tree in ("src", "conf"):
        shutil.copytree(REPO / tree, project / tree, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    pip = (sys.executable, "-m", "pip")
    _run(
        *pip,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        tmp_path / "dist",
        ".",
        cwd=project,
    )
    return next((tmp_path / "dist").glob("fashion_clip-*.whl"))


def _venv_with_dependencies(tmp_path: Path) -> Path:
    """A fresh venv whose dependencies come from this one's site-packages (no download), through a .pth
    file: unlike a site directory, a directory a .pth names has its own .pth files (the editable install's
    among them) ignored, so `fashion_clip` can only come from what is installed into the new venv."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    (Path(purelib.strip()) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


@pytest.mark.slow
def test_wheel_installs_and_composes_the_train_config_outside_the_repo(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for root, place, pattern in PACKAGE_DATA:
        expected = {f"{place}/{p.relative_to(root).as_posix()}" for p in root.glob(pattern)}
        assert expected and expected <= shipped, pattern
    # pyproject lists every package
    inits = {p.relative_to(REPO / "src").as_posix() for p in PACKAGE.rglob("__init__.py")}
    assert inits <= shipped

    python = _venv_with_dependencies(tmp_path)
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    location = _run(python, "-c", "import fashion_clip; print(fashion_clip.__file__)", cwd=elsewhere)
    assert Path(location).is_relative_to(tmp_path / "venv")
    config = _run(python, "-m", "fashion_clip.train", "--cfg", "job", cwd=elsewhere)
    for line in ("model:", "  name: FashionCLIP-Tiny", "loss:", "data:", "task_name: train"):
        assert line in config.splitlines(), line


def test_the_configs_live_at_the_top_level_and_load_from_the_package() -> None:
    from fashion_clip.config import CONFIG_DIR

    assert not (PACKAGE / "conf").exists()
    assert Path(CONFIG_DIR).resolve() == CONF.resolve()  # the editable install maps fashion_clip.conf there
