"""The fashion head-noun vocabulary: shipped with the package, extendable by a user's own word list.

Read by concept extraction (knowledge/) and by caption augmentation (data/caption_augment.py); the word
list itself ships as knowledge/data/fashion_nouns.txt, where the README points users to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from fashion_clip.errors import MissingInputError

SHIPPED = "fashion_nouns.txt"


def parse_words(lines: Iterable[str]) -> frozenset[str]:
    """One lower-cased word per line; blank lines and `#` comments let the list document itself."""
    words = (line.split("#", 1)[0].strip().lower() for line in lines)
    return frozenset(word for word in words if word)


def _shipped_lines() -> list[str]:
    """Lines of the shipped noun list, read from inside the installed package."""
    text = resources.files("fashion_clip.knowledge").joinpath("data", SHIPPED).read_text(encoding="utf-8")
    return text.splitlines()


def shipped_vocabulary() -> frozenset[str]:
    """Garment, accessory and material nouns shipped in the package, so extraction works out of the box."""
    return parse_words(_shipped_lines())


def shipped_sections() -> dict[str, frozenset[str]]:
    """The shipped nouns under each `# heading` line ("materials", "footwear", ...), so callers that must
    tell a material from a garment read the one list rather than keep a second."""
    sections: dict[str, list[str]] = {}
    heading = ""
    for line in _shipped_lines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip().lower()
        else:
            sections.setdefault(heading, []).append(line)
    return {name: words for name, lines in sections.items() if (words := parse_words(lines))}


def load_vocabulary(extra: Path | None = None) -> frozenset[str]:
    """The shipped nouns plus a user's file, since catalogues name garments the shipped list cannot know."""
    if extra is None:
        return shipped_vocabulary()
    if not extra.is_file():
        raise MissingInputError(
            f"vocabulary file '{extra}' does not exist; pass a text file with one head noun per line"
        )
    return shipped_vocabulary() | parse_words(extra.read_text(encoding="utf-8").splitlines())
