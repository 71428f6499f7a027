"""Caption text as catalogues ship it: bytes in unknown encodings, padding, stray whitespace."""

from __future__ import annotations

from collections.abc import Iterable

FALLBACK_ENCODING = "windows-1252"


def decode_text(raw: bytes | str) -> tuple[str, bool]:
    """UTF-8 when valid, else windows-1252 (Fashion-Gen's legacy bytes); the flag lets callers count those.

    The five bytes windows-1252 leaves undefined fall back to latin-1, so decoding never fails.
    """
    if isinstance(raw, str):
        return raw, False
    raw = raw.rstrip(b"\x00")
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode(FALLBACK_ENCODING), True
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


def clean_caption(text: str) -> str:
    """Collapse whitespace runs: tokenizers ignore them, but they make identical captions compare unequal."""
    return " ".join(text.split())


def clean_captions(texts: Iterable[str]) -> tuple[str, ...]:
    """Distinct non-empty cleaned captions in source order; the first is the one written to `.txt`."""
    return tuple(dict.fromkeys(c for c in (clean_caption(t) for t in texts) if c))


def caption_list(value: object) -> list[str]:
    """Caption strings from a field that may hold one string, a list of them, numbers or null."""
    values = value if isinstance(value, list | tuple) else [value]
    return [v if isinstance(v, str) else str(v) for v in values if v is not None]
