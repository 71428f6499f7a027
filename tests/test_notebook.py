"""notebooks/quickstart.ipynb runs as shipped, in a fresh directory, on this environment's Python."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

QUICKSTART = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
KERNEL = "python3"


def cell_text(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell showed: streams, results and displays as text or markdown."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/markdown", "")]
    return "".join(parts)


def test_quickstart_is_committed_without_outputs() -> None:
    notebook = nbformat.read(QUICKSTART, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
@pytest.mark.xdist_group("local_ports")  # a free port for other processes: see conftest.py
def test_quickstart_trains_reports_and_embeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a kernelspec of this interpreter first on JUPYTER_PATH: the notebook runs on this venv's packages
    kernels = tmp_path / "jupyter"
    write_kernel_spec(kernels / "kernels" / KERNEL)
    monkeypatch.setenv("JUPYTER_PATH", str(kernels))
    workdir = tmp_path / "work"
    workdir.mkdir()
    notebook = nbformat.read(QUICKSTART, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))

    NotebookClient(
        notebook, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(workdir)}}
    ).execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert cell_text(code[0]).strip() == sys.executable
    text = "".join(cell_text(cell) for cell in code)
    assert "| full | mean_recall |" in text  # the before/after table, as markdown
    assert "mean_recall after:" in text
    assert any("image/png" in output.get("data", {}) for cell in code for output in cell.outputs)
    assert "**red dress**" in text
    (run_dir,) = (workdir / "outputs" / "demo" / "runs").iterdir()
    assert {"recall_before_after.md", "comparison.png", ".hydra"} <= {p.name for p in run_dir.iterdir()}
    assert (workdir / "data" / "demo" / "test" / "manifest.json").is_file()
