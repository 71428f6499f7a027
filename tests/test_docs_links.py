"""The README and docs/*.md link only to files that exist, and to headings those files have.

Relative markdown links (`[text](target)`, images and `[label]: target` definitions; not http(s) or mailto)
must resolve to a path in the repository; a `#anchor` into a markdown file must equal the GitHub slug of
one of its headings. The README stays a front door: at most `README_MAX_LINES` lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 350
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]+<?([^\s>]+)>?", re.MULTILINE)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
EXTERNAL = re.compile(r"^(?:https?:|mailto:)", re.IGNORECASE)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        marker = re.match(r"^\s{0,3}(`{3,}|~{3,})", line)
        if marker:
            if fence is None:
                fence = marker.group(1)
            elif marker.group(1).startswith(fence):
                fence = None
            continue
        if fence is None:
            out.append((number, line))
    return out


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercased, punctuation but '-' and '_' dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_slugs(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    counts: dict[str, int] = {}
    slugs = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        heading = re.match(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", line)
        if heading:
            slug = github_slug(heading.group(1))
            slugs.add(slug if slug not in counts else f"{slug}-{counts[slug]}")
            counts[slug] = counts.get(slug, 0) + 1
    return slugs


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link in a markdown file's prose (not in code blocks or code spans).

    Link text may wrap onto the next line, so the prose is searched as one text with code blanked out.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    prose = dict(prose_lines("\n".join(lines)))
    text = "\n".join(
        INLINE_CODE.sub(lambda m: " " * len(m.group(0)), prose.get(n, "")) for n in range(1, len(lines) + 1)
    )
    matches = [*INLINE_LINK.finditer(text), *REFERENCE_DEFINITION.finditer(text)]
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in sorted(matches, key=lambda match: match.start())
    ]


def broken_links(path: Path, repo: Path = REPO) -> list[str]:
    """Every relative link of `path` whose file is missing or whose #anchor names no heading there."""
    problems = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path.resolve()
        where = f"{path.relative_to(repo)}:{number}: {target}"
        if not destination.is_relative_to(repo.resolve()):
            problems.append(f"{where} leaves the repository")
        elif not destination.exists():
            problems.append(f"{where} -> no such file {destination.relative_to(repo.resolve())}")
        elif anchor and destination.suffix == ".md" and anchor not in heading_slugs(destination):
            problems.append(f"{where} -> no heading with the slug #{anchor} in {destination.name}")
    return problems


def test_documents_are_found() -> None:
    names = {path.relative_to(REPO).as_posix() for path in DOCUMENTS}
    assert {"README.md", "docs/data.md", "docs/security.md"} <= names


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_readme_is_a_front_door() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Config groups (`src/fashion_clip/conf/`)", "config-groups-srcfashion_clipconf"),
        (
            "Knowledge injection (FashionKLIP-style concepts)",
            "knowledge-injection-fashionklip-style-concepts",
        ),
        ("Attribute search (`protocol=attributes`)", "attribute-search-protocolattributes"),
        ("What `make demo` shows", "what-make-demo-shows"),
        ("WiSE-FT", "wise-ft"),
        ("Deployment: export, ONNX and product search", "deployment-export-onnx-and-product-search"),
        ("See [the data manual](docs/data.md)", "see-the-data-manual"),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_the_check_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Resuming a run\n\n## Resuming a run\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[ok](docs/guide.md#resuming-a-run) [twice](docs/guide.md#resuming-a-run-1) [self](#title) [text\n"
        "wrapped](docs/missing-wrapped.md)\n"
        "[web](https://example.com/x#y) ![image](docs/guide.md) `[code](missing.md)`\n\n"
        "```\n[fenced](missing.md)\n```\n\n"
        "[gone](docs/missing.md) [bad anchor](docs/guide.md#resuming) [up](../../outside.md)\n"
        "[label]: docs/nowhere.md\n"
    )
    problems = broken_links(readme, repo=tmp_path)
    assert len(problems) == 5, problems
    assert problems[0].startswith("README.md:3: docs/missing-wrapped.md")
    assert "docs/missing.md" in problems[1]
    assert "#resuming" in problems[2]
    assert "leaves the repository" in problems[3]
    assert "docs/nowhere.md" in problems[4]
