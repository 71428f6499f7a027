"""The demo's products: what one is, and how distinct ones are drawn and dealt to splits, either spread
as far apart as the attribute space allows or (hard catalogue) partly in near-duplicate groups."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from fashion_clip.demo.captions import Attributes, draw_captions
from fashion_clip.demo.fabrics import COLOURS, GARMENT_MATERIALS, PATTERNS
from fashion_clip.demo.presets import DEFAULT_DIFFICULTY, Difficulty


@dataclass(frozen=True)
class Product:
    """One catalogue item: its attributes, its captions and the seed that fixes its look and its views."""

    product_id: str
    category: str
    colour: str
    pattern: str
    material: str
    captions: tuple[str, str]
    seed: int

    def metadata(self) -> dict:
        """The `{key}.json` payload shared by all views, so evaluation can group views by product."""
        return {
            "product_id": self.product_id,
            "category": self.category,
            "colour": self.colour,
            "pattern": self.pattern,
            "material": self.material,
            "captions": list(self.captions),
        }


# (category, colour, pattern, material): what makes a product distinct
Combo = tuple[str, str, str, str]
# what a near-duplicate group differs in; its members share category, colour and the other attribute
VARIED = ("pattern", "material")
GROUP_SIZES = (2, 3, 4)


def _attribute_combinations() -> list[Combo]:
    """Every (category, colour, pattern, material) the catalogue can contain, in a fixed order."""
    return [
        (category, colour, pattern, material)
        for category, materials in GARMENT_MATERIALS.items()
        for material in materials
        for colour in COLOURS
        for pattern in PATTERNS
    ]


def _build_products(
    entries: Sequence[tuple[Combo, tuple[str, str] | None]], first_index: int, rng: random.Random, long: bool
) -> list[Product]:
    """Number the products and seed their looks; an entry without captions gets its own drawn here."""
    products = []
    for index, (combo, captions) in enumerate(entries, first_index):
        captions = captions or draw_captions(combo, rng, long)
        products.append(Product(f"demo-{index:05d}", *combo, captions, rng.getrandbits(63)))
    return products


def _spread_plan(
    combos: list[Combo], counts: Mapping[str, int], rng: random.Random, long: bool
) -> dict[str, list[Product]]:
    """Products as different as the attribute space allows, dealt to splits in order.

    Combinations with an unused (category, colour, pattern) come first, so images stay tellable apart
    until that space runs out; only then do products differ by material alone.
    """
    seen: set[tuple[str, str, str]] = set()
    fresh, repeats = [], []
    for combo in combos:
        (repeats if combo[:3] in seen else fresh).append(combo)
        seen.add(combo[:3])
    chosen = (fresh + repeats)[: sum(counts.values())]
    rng.shuffle(chosen)
    products = _build_products([(combo, None) for combo in chosen], 0, rng, long)
    plan, start = {}, 0
    for split, count in counts.items():
        plan[split] = products[start : start + count]
        start += count
    return plan


def _fresh_first(combos: Sequence[Combo], used: set[Combo], shown: set[tuple[str, str]]) -> Iterator[Combo]:
    """Unused combos, first those with a (category, colour) new to the split, so none pair up by chance."""
    for fresh in (True, False):
        for combo in combos:
            if combo not in used and (combo[:2] not in shown) == fresh:
                yield combo


def _one_apart(combo: Combo, attribute: str) -> list[Combo]:
    """The combos that differ from `combo` in `attribute` only."""
    category, colour, pattern, material = combo
    if attribute == "pattern":
        return [(category, colour, other, material) for other in PATTERNS if other != pattern]
    return [(category, colour, pattern, other) for other in GARMENT_MATERIALS[category] if other != material]


def _masked(combo: Combo, attribute: str) -> Attributes:
    """The combo with `attribute` left unsaid, what an identical-caption group's captions describe."""
    category, colour, pattern, material = combo
    return (
        category,
        colour,
        None if attribute == "pattern" else pattern,
        None if attribute == "material" else material,
    )


def _split_entries(
    count: int, combos: Sequence[Combo], used: set[Combo], difficulty: Difficulty, rng: random.Random
) -> list[tuple[Combo, tuple[str, str] | None]]:
    """One split's products: near-duplicate groups (some sharing one caption), then single products."""
    grouped = round(count * difficulty.near_duplicates)
    identical = round(count * difficulty.identical_captions)
    shown: set[tuple[str, str]] = set()
    entries: list[tuple[Combo, tuple[str, str] | None]] = []
    candidates = _fresh_first(combos, used, shown)
    while len(entries) < grouped - 1 and (base := next(candidates, None)):
        attribute = rng.choice(VARIED)
        mates = [c for c in _one_apart(base, attribute) if c not in used]
        size = min(rng.choice(GROUP_SIZES), grouped - len(entries), len(mates) + 1)
        if size < 2:
            continue
        members = [base, *rng.sample(mates, size - 1)]
        shared = identical > sum(captions is not None for _, captions in entries)
        captions = draw_captions(_masked(base, attribute), rng, difficulty.long_captions) if shared else None
        entries += [(member, captions) for member in members]
        used.update(members)
        shown.add(base[:2])
    singles = _fresh_first(combos, used, shown)
    while len(entries) < count:
        single = next(singles)
        entries.append((single, None))
        used.add(single)
        shown.add(single[:2])
    rng.shuffle(entries)
    return entries


def _grouped_plan(
    combos: list[Combo], counts: Mapping[str, int], rng: random.Random, difficulty: Difficulty
) -> dict[str, list[Product]]:
    """Products planned split by split, so every near-duplicate group lies within one split."""
    used: set[Combo] = set()
    plan, start = {}, 0
    for split, count in counts.items():
        entries = _split_entries(count, combos, used, difficulty, rng)
        plan[split] = _build_products(entries, start, rng, difficulty.long_captions)
        start += count
    return plan


def plan_products(
    counts: Mapping[str, int], seed: int = 0, difficulty: Difficulty = DEFAULT_DIFFICULTY
) -> dict[str, list[Product]]:
    """Draw distinct products and deal them to splits, so no product (or its views) crosses a split."""
    combos = _attribute_combinations()
    total = sum(counts.values())
    if total > len(combos):
        raise ValueError(f"asked for {total} products but only {len(combos)} attribute combinations exist")
    rng = random.Random(seed)
    rng.shuffle(combos)
    if difficulty.near_duplicates:
        return _grouped_plan(combos, counts, rng, difficulty)
    return _spread_plan(combos, counts, rng, difficulty.long_captions)
