"""Which concepts a caption contains, as loss targets: the concepts it names and, apart, their hypernyms."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fashion_clip.knowledge.concepts import Concept, caption_ngrams, normalise_phrase


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
