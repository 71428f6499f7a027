"""Prompt templates that turn a category or attribute value into sentences for the text tower."""

from __future__ import annotations

from collections.abc import Sequence
from string import Formatter

from fashion_clip.errors import ConfigError

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of {}.",
    "a product photo of {}.",
    "a catalogue photo of {}.",
    "a studio photo of {} on a plain background.",
    "an online shop photo of {}.",
    "{}, a fashion item.",
)


def format_fields(template: str, key: str = "zeroshot.templates") -> list[str]:
    """Names of the replacement fields in a template ('' for `{}`); literal `{{`/`}}` are not fields."""
    try:
        return [field for _, field, _, _ in Formatter().parse(template) if field is not None]
    except ValueError as e:
        raise ConfigError(f"{key}: {template!r} is not a valid format string: {e}") from e


def check_templates(templates: Sequence[str], key: str = "zeroshot.templates") -> tuple[str, ...]:
    """Fail before any text is encoded when a template would not mention the value exactly once;
    `key` is the config key the message names."""
    if isinstance(templates, str) or len(templates) == 0:
        raise ConfigError(f"{key} must be a non-empty list of strings, got {templates!r}")
    for template in templates:
        if not isinstance(template, str) or format_fields(template, key) != [""]:
            raise ConfigError(
                f"{key}: template {template!r} must contain exactly one '{{}}' where the "
                f"value goes (and no other '{{...}}' field), e.g. 'a photo of {{}}.'"
            )
    return tuple(templates)
