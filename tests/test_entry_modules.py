"""Entry modules (`python -m fashion_clip.<name>`) are leaves: library code never imports one."""

from __future__ import annotations

import ast
from pathlib import Path

import fashion_clip

ENTRY_MODULES = {
    f"fashion_clip.{name}"
    for name in ("train", "tune", "evaluate", "wise", "report", "export", "index", "search")
}
PACKAGE_DIR = Path(fashion_clip.__file__).parent


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
