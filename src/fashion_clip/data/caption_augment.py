"""Caption augmentation without a language model: drop an attribute or a sentence, reorder sentences and
swap listed synonyms, never turning a colour, pattern, material or garment word into another."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from fashion_clip.data.vocabulary import shipped_sections
from fashion_clip.errors import ConfigError, MissingInputError

SHIPPED = "caption_vocabulary.yaml"
MATERIALS_SECTION = "materials"
# words that only make sense next to the attribute they introduce, dropped with it
CONNECTIVES = frozenset({"in", "with"})
ARTICLES = frozenset({"a", "an", "plain"})
PATTERN_NOUNS = frozenset({"pattern", "print", "finish", "motif"})
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
TOKEN = re.compile(r"^(\W*)(.*?)(\W*)$")
PERCENTAGE = re.compile(r"\d+(\.\d+)?%")

Sentence = list[str]


@dataclass(frozen=True)
class CaptionVocabulary:
    """What augmentation must recognise: droppable attributes, protected garment words, synonym groups."""

    colours: frozenset[str]
    patterns: frozenset[str]
    materials: frozenset[str]
    categories: frozenset[str]
    synonyms: dict[str, tuple[str, ...]]

    @property
    def attributes(self) -> frozenset[str]:
        """Words attribute dropout may delete."""
        return self.colours | self.patterns | self.materials

    def canonical(self, word: str) -> str:
        """The first word of `word`'s synonym group (itself if it has none), so swaps compare equal."""
        return self.synonyms.get(word, (word,))[0]


VocabularyFile = tuple[str, dict]


def _read_file(source: str, text: str) -> VocabularyFile:
    """A vocabulary file's mapping, with an error naming the file when it is not one."""
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with colours, patterns and synonyms")
    return source, raw


def _word_list(file: VocabularyFile, key: str) -> frozenset[str]:
    """A lower-cased word list of a vocabulary file, with an error naming the file and the key."""
    source, raw = file
    words = raw.get(key) or []
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ConfigError(f"{source}: '{key}' must be a list of words, got {words!r}")
    return frozenset(w.strip().lower() for w in words)


def _check_disjoint(files: list[VocabularyFile], kinds: dict[str, frozenset[str]]) -> None:
    """A colour or pattern may not also be another kind of word, or dropping it could delete a garment."""
    for file in files:
        for own in ("colours", "patterns"):
            for other in (k for k in kinds if k != own):
                for word in sorted(_word_list(file, own) & kinds[other]):
                    raise ConfigError(f"{file[0]}: '{word}' is listed as both {own} and {other}; keep one")


def _synonym_groups(files: list[VocabularyFile], kinds: dict[str, frozenset[str]]) -> dict[str, tuple]:
    """Each listed word mapped to its group, refusing groups that would rewrite what an image shows."""
    found: dict[str, tuple[str, ...]] = {}
    for source, raw in files:
        groups = raw.get("synonyms") or []
        if not isinstance(groups, list):
            raise ConfigError(f"{source}: 'synonyms' must be a list of word lists, got {groups!r}")
        for group in groups:
            if (
                not isinstance(group, list)
                or not all(isinstance(w, str) for w in group)
                or len(set(group)) < 2
            ):
                raise ConfigError(f"{source}: synonym group {group!r} must list at least two different words")
            words = tuple(w.strip().lower() for w in group)
            _check_group(source, words, kinds, found)
            found.update(dict.fromkeys(words, words))
    return found


def _check_group(
    source: str, words: tuple[str, ...], kinds: dict[str, frozenset[str]], found: dict[str, tuple]
) -> None:
    """One synonym group names one thing: no attribute word, no word of another group, and garment
    words only with garment words."""
    for word in words:
        kind = next((k for k in ("colours", "patterns", "materials") if word in kinds[k]), None)
        if kind is not None:
            raise ConfigError(
                f"{source}: '{word}' is in {kind} and cannot be a synonym: swapping it would change "
                "what the caption says the image shows; remove it from the synonyms"
            )
        if word in found:
            raise ConfigError(f"{source}: '{word}' is in two synonym groups; keep it in one")
    garments = [w in kinds["categories"] for w in words]
    if any(garments) and not all(garments):
        raise ConfigError(
            f"{source}: group {list(words)} mixes the garment word '{words[garments.index(True)]}' with "
            "words that are not garments in knowledge/data/fashion_nouns.txt; a group must name one thing"
        )


def load_caption_vocabulary(path: Path | None = None) -> CaptionVocabulary:
    """The shipped vocabulary file, extended by a user's in the same format, validated at load time."""
    shipped = resources.files("fashion_clip.data").joinpath(SHIPPED).read_text(encoding="utf-8")
    files = [_read_file(f"fashion_clip/data/{SHIPPED}", shipped)]
    if path is not None:
        if not path.is_file():
            raise MissingInputError(f"caption vocabulary '{path}' does not exist; write one like {SHIPPED}")
        files.append(_read_file(str(path), path.read_text(encoding="utf-8")))
    nouns = shipped_sections()
    kinds = {
        "colours": frozenset().union(*(_word_list(f, "colours") for f in files)),
        "patterns": frozenset().union(*(_word_list(f, "patterns") for f in files)),
        "materials": nouns[MATERIALS_SECTION],
        "categories": frozenset().union(*(w for k, w in nouns.items() if k != MATERIALS_SECTION)),
    }
    _check_disjoint(files, kinds)
    return CaptionVocabulary(**kinds, synonyms=_synonym_groups(files, kinds))


def word(token: str) -> str:
    """A token's word, lower-cased, without surrounding punctuation ("Jacket," -> "jacket")."""
    return TOKEN.match(token).group(2).lower()


def _trailing(token: str) -> str:
    """Punctuation after a token's word."""
    return TOKEN.match(token).group(3)


def split_sentences(caption: str) -> list[Sentence]:
    """Sentences as token lists; whitespace is folded."""
    return [s.split() for s in SENTENCE_END.split(" ".join(caption.split())) if s]


def join_sentences(sentences: list[Sentence]) -> str:
    """The caption text of token lists."""
    return " ".join(" ".join(s) for s in sentences if s)


def _capitalised(token: str) -> str:
    """A token with its first letter upper-cased."""
    match = TOKEN.match(token)
    core = match.group(2)
    return match.group(1) + core[:1].upper() + core[1:] + match.group(3)


def attribute_span(tokens: Sentence, i: int, attributes: frozenset[str]) -> tuple[int, int]:
    """First and last token of the phrase an attribute word stands in: "with a striped pattern", "in red",
    "100% wool", "red and" (of "red and white"); only the attribute's own connectives, never a noun."""
    words = [word(t) for t in tokens]
    first, last = i, i
    if last + 1 < len(words) and words[last + 1] in PATTERN_NOUNS and not _trailing(tokens[last]):
        last += 1
        while first > 0 and words[first - 1] in ARTICLES and not _trailing(tokens[first - 1]):
            first -= 1
    while first > 0 and PERCENTAGE.fullmatch(tokens[first - 1]):
        first -= 1
    clause_ends = last + 1 == len(words) or bool(_trailing(tokens[last]))
    if first > 0 and words[first - 1] in CONNECTIVES and (clause_ends or words[last + 1] in CONNECTIVES):
        first -= 1
    elif not clause_ends and words[last + 1] == "and" and last + 2 < len(words):
        last += 1 if words[last + 2] in attributes else 0
    elif first > 1 and words[first - 1] == "and" and words[first - 2] in attributes:
        first -= 1
    return first, last


def _without_span(tokens: Sentence, first: int, last: int) -> Sentence:
    """A sentence without tokens first..last, its end punctuation and capital kept."""
    kept = tokens[:first] + tokens[last + 1 :]
    end = _trailing(tokens[last])
    if last + 1 == len(tokens) and first > 0 and end:
        lead, core, _ = TOKEN.match(kept[-1]).groups()
        kept[-1] = lead + core + end
    if first == 0 and kept and tokens[0][:1].isupper():
        kept[0] = _capitalised(kept[0])
    return kept


def _is_empty(tokens: Sentence) -> bool:
    """A sentence left with nothing to say: no word, or only labels such as "Shell:"."""
    return all(not re.search(r"[A-Za-z]", t) or t.endswith(":") for t in tokens)


class CaptionAugment:
    """Training-time text transform (and the offline tool's): each step happens with its probability.

    `attribute_dropout` deletes one colour, pattern or material phrase; `sentence_dropout` deletes one
    sentence that names no garment; `sentence_shuffle` reorders the sentences; `synonym_swap` is the chance
    that each listed word becomes another word of its group. Garment words are never deleted, and the
    caption never comes out empty. Randomness comes only from the `rng` passed in, so a seed replays it.
    """

    def __init__(
        self,
        attribute_dropout: float = 0.0,
        sentence_dropout: float = 0.0,
        sentence_shuffle: float = 0.0,
        synonym_swap: float = 0.0,
        vocabulary: str | None = None,
    ) -> None:
        probabilities = {
            "attribute_dropout": attribute_dropout,
            "sentence_dropout": sentence_dropout,
            "sentence_shuffle": sentence_shuffle,
            "synonym_swap": synonym_swap,
        }
        for key, value in probabilities.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"data.caption_augment.{key}={value}: a probability must be in [0, 1]")
        self.probabilities = probabilities
        self.vocabulary = load_caption_vocabulary(Path(vocabulary) if vocabulary else None)

    def __call__(self, caption: str, rng: random.Random) -> str:
        """One augmented wording of `caption`; the same caption and rng state give the same result."""
        sentences = split_sentences(caption)
        if not sentences:
            return caption
        p = self.probabilities
        if rng.random() < p["sentence_dropout"]:
            sentences = self.drop_sentence(sentences, rng)
        if rng.random() < p["sentence_shuffle"] and len(sentences) > 1:
            sentences = [s[:-1] + [s[-1] if _trailing(s[-1]) else s[-1] + "."] for s in sentences]
            rng.shuffle(sentences)
        if rng.random() < p["attribute_dropout"]:
            sentences = self.drop_attribute(sentences, rng)
        synonyms, swap = self.vocabulary.synonyms, p["synonym_swap"]
        sentences = [
            [self.swap(t, rng) if word(t) in synonyms and rng.random() < swap else t for t in s]
            for s in sentences
        ]
        return join_sentences(sentences) or caption

    def drop_sentence(self, sentences: list[Sentence], rng: random.Random) -> list[Sentence]:
        """All but one sentence that names no garment (unchanged when every sentence names one)."""
        categories = self.vocabulary.categories
        droppable = [i for i, s in enumerate(sentences) if not any(word(t) in categories for t in s)]
        if len(sentences) < 2 or not droppable:
            return sentences
        dropped = rng.choice(droppable)
        return [s for i, s in enumerate(sentences) if i != dropped]

    def drop_attribute(self, sentences: list[Sentence], rng: random.Random) -> list[Sentence]:
        """The sentences without one attribute phrase. A sentence that would be left empty ("Shell: 100%
        wool.") goes whole, unless it names a garment ("Dress: red.") or is the only one: nothing changes."""
        attributes = self.vocabulary.attributes
        mentions = [
            (s, i)
            for s, tokens in enumerate(sentences)
            for i, t in enumerate(tokens)
            if word(t) in attributes
        ]
        if not mentions:
            return sentences
        s, i = rng.choice(mentions)
        first, last = attribute_span(sentences[s], i, attributes)
        if _is_empty(sentences[s][:first] + sentences[s][last + 1 :]):
            categories = self.vocabulary.categories
            if len(sentences) == 1 or any(word(t) in categories for t in sentences[s]):
                return sentences
            return [t for k, t in enumerate(sentences) if k != s]
        shortened = _without_span(sentences[s], first, last)
        return [shortened if k == s else t for k, t in enumerate(sentences)]

    def swap(self, token: str, rng: random.Random) -> str:
        """The token with its word replaced by another of its synonym group, case and punctuation kept."""
        group = self.vocabulary.synonyms.get(word(token))
        if group is None:
            return token
        lead, core, end = TOKEN.match(token).groups()
        new = rng.choice([w for w in group if w != core.lower()])
        if core.isupper() and len(core) > 1:
            new = new.upper()
        elif core[:1].isupper():
            new = new[:1].upper() + new[1:]
        return lead + new + end
