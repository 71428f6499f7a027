"""Entry modules (`python -m fashion_clip.<name>`) are leaves: library code never imports one. The Hydra ones
share one shape, `main = hydra_entry(config, "dotted.task")`, so `--help` answers without torch."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from helpers.python_subprocess import run_python
from hydra.utils import get_method

import fashion_clip

ENTRY_MODULES = {
    f"fashion_clip.{name}"
    for name in ("train", "tune", "evaluate", "wise", "report", "export", "index", "search")
}
HYDRA_ENTRY_MODULES = ("train", "tune", "evaluate", "wise", "export", "index")
PACKAGE_DIR = Path(fashion_clip.__file__).parent
# what a Hydra entry module may hold besides its docstring: these imports, `main = ...` and the __main__ guard
SHIM_IMPORTS = {("__future__", "annotations"), ("fashion_clip.config", "hydra_entry")}


def imported_modules(source: str, module: str) -> set[str]:
    """Every module `source` (the code of `module`) imports, relative and `from package import module` too."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parent = module.rsplit(".", node.level)[0] if node.level else ""
            base = ".".join(part for part in (parent, node.module) if part)
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def module_name(path: Path) -> str:
    """A file's dotted name (`pkg.__init__` for a package, so its relative imports resolve)."""
    return ".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)


def test_the_scan_sees_every_import_form() -> None:
    source = "import fashion_clip.train\nfrom fashion_clip import report\nfrom ..evaluate import evaluate\n"
    found = imported_modules(source, "fashion_clip.reports.comparison")
    assert found & ENTRY_MODULES == {"fashion_clip.train", "fashion_clip.report", "fashion_clip.evaluate"}


def test_no_module_imports_an_entry_module() -> None:
    offenders = [
        f"{module_name(path)} imports {name}"
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        for name in sorted(imported_modules(path.read_text(), module_name(path)) & ENTRY_MODULES)
    ]
    assert offenders == []


def shim_problems(source: str) -> list[str]:
    """What makes an entry module more than `main = hydra_entry("config", "dotted.task")` over a library
    function: any other statement, import or argument."""
    problems = []
    for node in ast.parse(source).body[1:]:  # after the docstring
        if isinstance(node, ast.ImportFrom):
            problems += [
                f"imports {node.module}.{a.name}"
                for a in node.names
                if (node.module, a.name) not in SHIM_IMPORTS
            ]
        elif isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["main"]:
            call = node.value
            literal = isinstance(call, ast.Call) and ast.unparse(call.func) == "hydra_entry"
            values = [*call.args, *(k.value for k in call.keywords)] if literal else []
            if not literal or not all(
                isinstance(v, ast.Constant) and isinstance(v.value, str) for v in values
            ):
                problems.append(f"main = {ast.unparse(call)}")
        elif not (isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"):
            problems.append(ast.unparse(node).splitlines()[0])
    return problems


def test_the_shape_check_names_what_does_not_belong() -> None:
    source = '''"""doc."""
from fashion_clip.config import hydra_entry
from fashion_clip.training import train

def helper():
    return 1

main = hydra_entry("train", train)
'''
    assert shim_problems(source) == [
        "imports fashion_clip.training.train",
        "def helper():",
        "main = hydra_entry('train', train)",
    ]


@pytest.mark.parametrize("name", HYDRA_ENTRY_MODULES)
def test_hydra_entry_modules_are_one_line_over_a_library_function(name: str) -> None:
    source = Path(importlib.import_module(f"fashion_clip.{name}").__file__).read_text()
    assert shim_problems(source) == []
    main_call = next(
        node.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "main"
    )
    task = get_method(main_call.args[1].value)  # the dotted path names a function that exists
    assert (
        callable(task)
        and task.__module__.startswith("fashion_clip.")
        and task.__module__ not in ENTRY_MODULES
    )


@pytest.mark.slow
def test_help_imports_neither_torch_nor_lightning() -> None:
    """`--help` and `--cfg` answer in about a second: the task (and torch, ~7 s) loads when the run starts."""
    imports = "".join(f"import fashion_clip.{name}; " for name in HYDRA_ENTRY_MODULES)
    check = f"import sys; {imports}print(sorted({{'torch', 'lightning'}} & set(sys.modules)))"
    done = run_python("-c", check)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
    done = run_python("-m", "fashion_clip.train", "--help")
    assert done.returncode == 0 and "== Config ==" in done.stdout, done.stderr[-2000:]
