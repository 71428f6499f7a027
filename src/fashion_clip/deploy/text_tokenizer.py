"""The text tower's tokenizer from the export directory, run with `tokenizers` (no torch, no open_clip).

open_clip cleans each text before tokenizing (`clean`: fix mojibake, unescape HTML, collapse whitespace,
then lower-case or strip punctuation); its cleaning lives in a module that imports torch, so the same
steps are repeated here and the tests compare both on many strings.
"""

from __future__ import annotations

import html
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ftfy
import numpy as np
from tokenizers import Tokenizer

PUNCTUATION = str.maketrans("", "", string.punctuation)


def basic_clean(text: str) -> str:
    """open_clip's `basic_clean`: fix broken unicode, unescape HTML twice, strip."""
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def whitespace_clean(text: str) -> str:
    """Runs of whitespace become one space."""
    return " ".join(text.split())


CLEANERS: dict[str, Callable[[str], str]] = {
    "whitespace": lambda text: whitespace_clean(basic_clean(text)),
    "lower": lambda text: whitespace_clean(basic_clean(text)).lower(),
    "canonicalize": lambda text: whitespace_clean(basic_clean(text).translate(PUNCTUATION).lower()),
}


class TextTokenizer:
    """Texts to the fixed-length int64 token ids of the text encoder, as open_clip's tokenizer makes them."""

    def __init__(self, tokenizer_file: str | Path, spec: dict[str, Any]):
        self.clean = CLEANERS[spec["clean"]]
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(spec["context_length"])
        self.tokenizer.enable_padding(pad_id=spec["pad_id"], length=spec["context_length"])

    def __call__(self, texts: list[str]) -> np.ndarray:
        """A (len(texts), context_length) int64 array."""
        encodings = self.tokenizer.encode_batch([self.clean(text) for text in texts])
        return np.asarray([e.ids for e in encodings], dtype=np.int64)
