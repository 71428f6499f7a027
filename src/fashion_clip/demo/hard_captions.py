"""Fashion-Gen-like long captions for the hard demo catalogue: a title, then fit, composition, care and
provenance sentences, most of which describe nothing the image shows (as real product copy does)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType

# What each material's label says; every entry names the material, so text and image agree on it.
COMPOSITIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "cotton": ("100% cotton.", "98% cotton, 2% elastane.", "100% organic cotton."),
        "linen": ("100% linen.", "70% linen, 30% viscose."),
        "denim": ("100% cotton denim.", "Denim: 99% cotton, 1% elastane."),
        "wool": ("100% virgin wool.", "80% wool, 20% polyamide."),
        "leather": ("100% lambskin leather.", "Shell: 100% leather. Lining: 100% polyester."),
        "silk": ("100% silk.", "100% mulberry silk."),
        "suede": ("100% goatskin suede.", "Shell: 100% suede. Lining: 100% polyester."),
        "canvas": ("100% cotton canvas.", "Shell: 100% canvas. Lining: 100% cotton."),
    }
)
FITS = ("Relaxed fit.", "Slim fit, true to size.", "Regular fit.", "Oversized fit, size down.")
CARE = ("Machine wash cold.", "Dry clean only.", "Hand wash cold.", "Do not tumble dry.")
PROVENANCE = ("Made in Italy.", "Made in Portugal.", "Imported.", "Ethically sourced.", "Designed in Paris.")
# accessories and footwear: a fit line would read oddly in their copy
NO_FIT = frozenset({"boots", "handbag", "hat", "scarf"})
MAX_SENTENCES = 4


def sentence_count(text: str) -> int:
    """Sentences in caption text, all of which end with a full stop."""
    return text.count(".")


def long_caption(title: str, note: str, category: str, material: str | None, rng: random.Random) -> str:
    """Title, composition (if the material is said) and a random pick of the rest: 2-4 sentences in all."""
    composition = rng.choice(COMPOSITIONS[material]) if material else ""
    before = [note] if category in NO_FIT else [note, rng.choice(FITS)]
    optional = [*before, rng.choice(CARE), rng.choice(PROVENANCE)]
    room = MAX_SENTENCES - 1 - sentence_count(composition)
    kept = set(rng.sample(range(len(optional)), rng.randint(0 if composition else 1, room)))
    body = [sentence for i, sentence in enumerate(optional) if i in kept]
    body.insert(sum(i < len(before) for i in kept), composition)
    return " ".join([title, *filter(None, body)])
