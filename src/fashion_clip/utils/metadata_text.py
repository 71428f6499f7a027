"""A sample's json metadata value (string, number, boolean, null, list or object) as the text every page,
table and the attribute search show and match, so no reader or page has its own idea of a value's text."""

from __future__ import annotations

import html
import json

MISSING = "-"


def metadata_text(value: object) -> str:
    """The value's text: a string stripped, a number as written, a boolean as json spells it, a list's
    items' texts joined with ", " (empty items left out), an object as compact json; "" (missing) for
    null and for an empty string, list or object, as readers treat a field the json does not have."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(text for text in map(metadata_text, value) if text)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else ""
    return str(value)


def metadata_html(value: object) -> str:
    """The value's text escaped for an HTML page, a dash when missing: a value must never become markup."""
    return html.escape(metadata_text(value) or MISSING)


def markdown_cell(text: str) -> str:
    """Text as one markdown table cell: HTML-escaped (markdown viewers render raw HTML), pipes escaped
    and line breaks folded so the value cannot split the row."""
    return " ".join(html.escape(text).replace("|", "\\|").split()) or MISSING
