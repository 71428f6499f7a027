"""Concept extraction: frequent 1-3 word noun phrases headed by a fashion noun, with their hypernyms; and
matching, which concepts a caption contains as loss targets: the concepts it names and, apart, their
hypernyms.

A concept's hypernym is the phrase without its first word ("black leather jacket" -> "leather jacket"
-> "jacket"); a head noun alone is a root. Every n-gram ending in the head noun is counted, so a
concept's hypernym is always at least as frequent and the hierarchy is closed under `min_count`.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

PROMPT = "a photo of {phrase}"
CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}/|\"]+")
TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
STOPWORDS = frozenset(
    "a an and are as at be by for from has in is it its of on or our the this to with without".split()
)


@dataclass(frozen=True)
class Concept:
    """One node of the hierarchy: its phrase, its father (None for a root) and example image keys."""

    query_id: int
    phrase: str
    father: str | None
    prompt: str
    image_keys: tuple[str, ...] = ()

    @property
    def depth(self) -> int:
        """Roots are depth 0; each extra modifier word is one level further down."""
        return self.phrase.count(" ")


def caption_clauses(caption: str) -> list[list[str]]:
    """Lower-cased word lists per clause, so no phrase spans a comma or a sentence end."""
    return [TOKEN.findall(clause) for clause in CLAUSE_BREAK.split(caption.lower())]


def hypernym(phrase: str) -> str | None:
    """The phrase minus its first word; a single head noun has none (it is a root)."""
    words = phrase.split(" ")
    return " ".join(words[1:]) if len(words) > 1 else None


def ancestors(phrase: str) -> list[str]:
    """Every hypernym up to the root, nearest first."""
    chain = []
    father = hypernym(phrase)
    while father is not None:
        chain.append(father)
        father = hypernym(father)
    return chain


def candidate_phrases(caption: str, heads: frozenset[str], max_words: int = 3) -> set[str]:
    """Every 1..max_words-word n-gram of the caption that ends in a head noun and holds no stopword."""
    found = set()
    for words in caption_clauses(caption):
        for end, word in enumerate(words):
            if word not in heads:
                continue
            for start in range(end, max(end - max_words, -1), -1):
                if words[start] in STOPWORDS:
                    break
                found.add(" ".join(words[start : end + 1]))
    return found


def sample_phrases(captions: Sequence[str], heads: frozenset[str], max_words: int = 3) -> set[str]:
    """Phrases any of a sample's captions mention: a sample counts once per phrase however it is worded."""
    return set().union(*(candidate_phrases(c, heads, max_words) for c in captions))


def extract_concepts(
    samples: Iterable[tuple[str, Sequence[str]]],
    heads: frozenset[str],
    min_count: int = 5,
    max_words: int = 3,
    images_per_concept: int = 8,
    total: int | None = None,
) -> list[Concept]:
    """Concepts mentioned by at least `min_count` samples, roots first, with up to K example image keys.

    `samples` yields (image key, captions); examples are the first K samples in reading order, so the
    same data always gives the same knowledge base.
    """
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for key, captions in tqdm(samples, total=total, desc="extracting concepts", unit="sample"):
        for phrase in sample_phrases(captions, heads, max_words):
            counts[phrase] += 1
            keys = examples.setdefault(phrase, [])
            if len(keys) < images_per_concept:
                keys.append(key)
    kept = sorted((p for p, n in counts.items() if n >= min_count), key=lambda p: (p.count(" "), p))
    return [
        Concept(i, phrase, hypernym(phrase), PROMPT.format(phrase=phrase), tuple(examples[phrase]))
        for i, phrase in enumerate(kept)
    ]


def summary_rows(concepts: Sequence[Concept]) -> list[tuple[str, str]]:
    """What a user checks before training on a knowledge base: size, hierarchy depth, examples per concept."""
    if not concepts:
        return [("concepts", "0")]
    images = [len(c.image_keys) for c in concepts]
    return [
        ("concepts", str(len(concepts))),
        ("roots (head nouns)", str(sum(c.father is None for c in concepts))),
        ("hierarchy levels", str(1 + max(c.depth for c in concepts))),
        (
            "images per concept (min / median / max)",
            f"{min(images)} / {statistics.median(images):g} / {max(images)}",
        ),
    ]


def normalise_phrase(phrase: str) -> str:
    """The word sequence a phrase matches in captions, however a knowledge base spelled or cased it."""
    return " ".join(TOKEN.findall(phrase.lower()))


def caption_ngrams(caption: str, max_words: int) -> set[str]:
    """Every n-gram of 1..max_words words within one clause of the caption."""
    return {
        " ".join(words[start : start + n])
        for words in caption_clauses(caption)
        for n in range(1, max_words + 1)
        for start in range(len(words) - n + 1)
    }


def ancestor_indices(concepts: Sequence[Concept], index: dict[str, int]) -> list[frozenset[int]]:
    """Per concept, the bank rows of all its ancestors (the knowledge base reader has broken any cycle)."""
    father_of = {normalise_phrase(c.phrase): c.father and normalise_phrase(c.father) for c in concepts}
    chains = []
    for concept in concepts:
        chain: set[int] = set()
        father = father_of[normalise_phrase(concept.phrase)]
        while father and father in index and index[father] not in chain:
            chain.add(index[father])
            father = father_of.get(father)
        chains.append(frozenset(chain))
    return chains


class ConceptMatcher:
    """Matches captions against the bank's phrases; a named concept's ancestors count as its hypernyms."""

    def __init__(self, concepts: Sequence[Concept]) -> None:
        self.index = {normalise_phrase(c.phrase): i for i, c in enumerate(concepts)}
        self.size = len(concepts)
        self.max_words = max((p.count(" ") + 1 for p in self.index), default=1)
        self.ancestors = ancestor_indices(concepts, self.index)

    def match(self, caption: str) -> tuple[frozenset[int], frozenset[int]]:
        """(named concepts, their hypernyms): a match that is a hypernym of another counts only as one."""
        found = {self.index[g] for g in caption_ngrams(caption, self.max_words) if g in self.index}
        hypernyms = frozenset().union(*(self.ancestors[i] for i in found))
        return frozenset(found - hypernyms), hypernyms

    def targets(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Two (batch, concepts) 0/1 matrices: named concepts and hypernyms, the loss's positives."""
        named = torch.zeros(len(captions), self.size)
        hypernyms = torch.zeros(len(captions), self.size)
        for row, caption in enumerate(captions):
            direct, upper = self.match(caption)
            named[row, list(direct)] = 1.0
            hypernyms[row, list(upper)] = 1.0
        return named, hypernyms
