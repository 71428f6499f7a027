"""The package's layers and acyclic packages, declared as import-linter contracts in pyproject.toml
([tool.importlinter]), hold: a module imports only from layers below its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# in a child process: import-linter reconfigures logging, which would silence this session's loggers
LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"
)


def lint(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on `config`'s contracts, without writing a cache into the working tree."""
    return subprocess.run(
        [sys.executable, "-c", LINT, str(config)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_import_contracts_are_kept(tmp_path: Path) -> None:
    pytest.importorskip("importlinter", reason="import-linter comes with the dev extra")
    done = lint(REPO / "pyproject.toml", tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_a_wrong_way_import_breaks_the_layers(tmp_path: Path) -> None:
    """The contracts are live: in a copy of the package (renamed, so the installed one cannot stand in for
    it), a data module importing knowledge, a layer above, fails the check."""
    pytest.importorskip("importlinter", reason="import-linter comes with the dev extra")
    package = REPO / "src" / "fashion_clip"
    for path in package.rglob("*.py"):
        target = tmp_path / "layers_copy" / path.relative_to(package)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text().replace("fashion_clip", "layers_copy"))
    with (tmp_path / "layers_copy" / "data" / "manifest.py").open("a") as f:
        f.write("\nfrom layers_copy.knowledge.concepts import Concept  # noqa: E402,F401\n")
    config = (REPO / "pyproject.toml").read_text().replace("fashion_clip", "layers_copy")
    (tmp_path / "pyproject.toml").write_text(config)
    done = lint(tmp_path / "pyproject.toml", tmp_path)  # lint-imports finds the copy in its cwd
    assert done.returncode == 1, done.stdout[-6000:] + done.stderr[-2000:]
    assert "layers_copy.data is not allowed to import layers_copy.knowledge" in done.stdout
