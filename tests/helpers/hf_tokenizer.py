"""A stand-in Hugging Face tokenizer built offline from catalogue captions, for hub-tokenizer models."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "eos_token": "<eos>"}


def shard_captions(root: Path) -> Iterator[str]:
    """Every caption in the `.json` members of the shards under `root`."""
    for shard in sorted(root.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    yield from json.load(tar.extractfile(member))["captions"]


def save_word_level_tokenizer(captions: Iterator[str], out_dir: Path) -> Path:
    """A lower-cased word vocabulary that ends every text with eos, saved as `AutoTokenizer` loads it."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIALS["unk_token"]))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(captions, trainers.WordLevelTrainer(special_tokens=list(SPECIALS.values())))
    eos = SPECIALS["eos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, tokenizer.token_to_id(eos))]
    )
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIALS).save_pretrained(out_dir)
    return out_dir
