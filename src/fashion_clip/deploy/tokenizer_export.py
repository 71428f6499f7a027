"""Write the text tower's tokenizer as a `tokenizers` file, with the settings `TextTokenizer` needs.

open_clip's own BPE tokenizer (CLIP models) becomes a byte-level BPE `tokenizers` model built from its
vocabulary and merges, the same construction as transformers' `CLIPConverter`; a Hugging Face tokenizer
(SigLIP2's Gemma) is saved with `save_pretrained`, which writes its `tokenizer.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import open_clip
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from fashion_clip.deploy.text_tokenizer import CLEANERS
from fashion_clip.errors import ConfigError

TOKENIZER_FILE = "tokenizer.json"
# open_clip's SimpleTokenizer splits words with this pattern before byte-level BPE
WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def clean_name(clean_fn: object) -> str:
    """The open_clip name of a tokenizer's cleaning function (`lower`, `whitespace`, `canonicalize`)."""
    for name in CLEANERS:
        if open_clip.tokenizer.get_clean_fn(name) is clean_fn:
            return name
    raise ConfigError(f"the tokenizer cleans text with {clean_fn!r}, which the ONNX export cannot reproduce")


def bpe_tokenizer(simple: open_clip.tokenizer.SimpleTokenizer) -> Tokenizer:
    """open_clip's BPE as a `tokenizers` model: same vocabulary, merges, word split and start/end tokens."""
    tokenizer = Tokenizer(
        models.BPE(
            vocab=simple.encoder,
            merges=list(simple.bpe_ranks),
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
        )
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<start_of_text> $A <end_of_text>",
        special_tokens=[
            ("<start_of_text>", simple.sot_token_id),
            ("<end_of_text>", simple.eot_token_id),
        ],
    )
    return tokenizer


def export_tokenizer(tokenizer: Any, out_dir: Path) -> dict[str, Any]:
    """Write `tokenizer.json` into `out_dir`; return the settings `TextTokenizer` reads from the manifest."""
    if isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer):
        if tokenizer.reduction_fn is not None:
            raise ConfigError("a SimpleTokenizer with a reduction mask cannot be exported to ONNX")
        bpe_tokenizer(tokenizer).save(str(out_dir / TOKENIZER_FILE))
        return {
            "file": TOKENIZER_FILE,
            "kind": "open_clip_bpe",
            "context_length": tokenizer.context_length,
            "clean": clean_name(tokenizer.clean_fn),
            "pad_id": 0,
        }
    if isinstance(tokenizer, open_clip.tokenizer.HFTokenizer):
        if tokenizer.tokenizer_mode or tokenizer.strip_sep_token:
            raise ConfigError(
                f"the Hugging Face tokenizer's mode ({tokenizer.tokenizer_mode!r}, strip_sep_token="
                f"{tokenizer.strip_sep_token}) has no ONNX export; only the standard mode is supported"
            )
        tokenizer.tokenizer.backend_tokenizer.save(str(out_dir / TOKENIZER_FILE))
        return {
            "file": TOKENIZER_FILE,
            "kind": "huggingface",
            "context_length": tokenizer.context_length,
            "clean": clean_name(tokenizer.clean_fn),
            "pad_id": tokenizer.tokenizer.pad_token_id,
        }
    raise ConfigError(f"no ONNX export for a tokenizer of type {type(tokenizer).__name__}")
