"""Demo captions: a Fashion-Gen-style title with a detail note and a paraphrase, or, for the hard
catalogue, long product copy whose fit, composition, care and provenance sentences mostly describe nothing
the image shows (as real product copy does)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType

from fashion_clip.demo.fabrics import PATTERNS

# (category, colour, pattern, material) as a caption describes them; None: left unsaid
Attributes = tuple[str, str, str | None, str | None]

# the detail sentence that follows each garment type's title
NOTES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "t-shirt": ("Short sleeves, crew neck.", "Short sleeves, relaxed fit.", "Crew neck, straight hem."),
        "jacket": ("Long sleeves, notched lapels, zip closure.", "Long sleeves, two flap pockets."),
        "dress": ("Sleeveless with thin straps, flared skirt.", "Fitted bodice, midi length."),
        "trousers": ("Straight leg, belt loops, zip fly.", "High waist, full length."),
        "shorts": ("Mid-thigh length, belt loops.", "Relaxed fit, elasticated waist."),
        "skirt": ("A-line silhouette, knee length.", "High waist, concealed zip."),
        "boots": ("Mid-calf shaft, low heel.", "Round toe, rubber sole."),
        "handbag": ("Top handle, flap closure.", "Structured shape, single handle."),
        "hat": ("Wide brim, pinched crown.", "Fedora shape with a ribbon band."),
        "scarf": ("Long shape with fringed ends.", "Lightweight, fringed ends."),
    }
)
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


def _capitalised(text: str) -> str:
    """Captions start with a capital, whichever attribute comes first."""
    return text[0].upper() + text[1:]


def _title(category: str, colour: str, pattern: str | None, material: str | None) -> str:
    """The Fashion-Gen-style title sentence; an attribute given as None is left unsaid."""
    shade = PATTERNS[pattern].title.format(colour=colour) if pattern else colour
    return _capitalised(" ".join(filter(None, (shade, material, category))) + ".")


def _paraphrase(category: str, colour: str, pattern: str | None, material: str | None) -> str:
    """A second wording of the title; an attribute given as None is left unsaid."""
    finish = f" with {PATTERNS[pattern].phrase}" if pattern else ""
    return _capitalised(" ".join(filter(None, (material, category))) + f" in {colour}{finish}.")


def product_captions(
    category: str, colour: str, pattern: str | None, material: str | None, note: str
) -> tuple[str, str]:
    """A Fashion-Gen-style title plus a paraphrase, so text augmentation has two wordings to pick from."""
    return f"{_title(category, colour, pattern, material)} {note}", _paraphrase(
        category, colour, pattern, material
    )


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


def draw_captions(attributes: Attributes, rng: random.Random, long: bool) -> tuple[str, str]:
    """Captions for attributes (None: left unsaid), either the short default ones or long product copy."""
    category, colour, pattern, material = attributes
    note = rng.choice(NOTES[category])
    if not long:
        return product_captions(category, colour, pattern, material, note)
    title = _title(category, colour, pattern, material)
    return long_caption(title, note, category, material, rng), _paraphrase(*attributes)
