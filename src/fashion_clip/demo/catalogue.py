"""Embedded demo catalogue: synthetic garments with Fashion-Gen-style captions, so the whole pipeline can
be trained and evaluated on CPU in minutes without downloading a real dataset."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from fashion_clip.data.manifest import Manifest, read_manifest, sha256_file
from fashion_clip.demo.hard_captions import long_caption
from fashion_clip.ingest.shard_writer import ShardSink

Point = tuple[float, float]
RGB = tuple[int, int, int]
Array = np.ndarray

SPLITS = ("train", "val", "test")
DEFAULT_PRODUCTS: Mapping[str, int] = MappingProxyType({"train": 700, "val": 120, "test": 120})
STAMP_NAME = "catalogue.json"
GENERATOR_VERSION = 1
SUPERSAMPLE = 2
JPEG_QUALITY = 95


# --- silhouettes


@dataclass(frozen=True)
class Shape:
    """One filled piece of a silhouette in unit coordinates (y down): polygon, ellipse box or thick line."""

    kind: str
    points: tuple[Point, ...]
    width: float = 0.0


def _points(spec: str) -> tuple[Point, ...]:
    """Parse SVG-style "x,y x,y ..." in a 100x100 box, which keeps the silhouette tables compact."""
    return tuple((float(x) / 100.0, float(y) / 100.0) for x, y in (p.split(",") for p in spec.split()))


def _mirrored(points: tuple[Point, ...]) -> tuple[Point, ...]:
    """Reflect about the vertical centre line, since most garments are left-right symmetric."""
    return tuple((1.0 - x, y) for x, y in points)


def _polygon(spec: str) -> Shape:
    """Polygon for the asymmetric pieces (boots, scarf ends)."""
    return Shape("polygon", _points(spec))


def _symmetric(half: str) -> Shape:
    """Polygon from its left half (top centre, down the left side, to bottom centre) plus its mirror image."""
    left = _points(half)
    return Shape("polygon", left + _mirrored(left)[::-1])


def _seams(*specs: str, mirror: bool = False) -> tuple[tuple[Point, ...], ...]:
    """Seam lines drawn inside the garment, optionally with their mirror images."""
    lines = tuple(_points(spec) for spec in specs)
    return lines + tuple(_mirrored(line) for line in lines) if mirror else lines


def _arc(centre: Point, radii: Point, degrees: Point, width: float, n: int = 24) -> Shape:
    """Thick elliptic arc (unit coordinates) for handles and loops that polygons cannot bend."""
    angles = np.radians(np.linspace(*degrees, n))
    points = tuple((centre[0] + radii[0] * math.cos(a), centre[1] + radii[1] * math.sin(a)) for a in angles)
    return Shape("line", points, width)


def _fringe(x0: float, x1: float, y: float, count: int = 5) -> tuple[Shape, ...]:
    """Short tassels hanging below a scarf end, which make the scarf recognisable at low resolution."""
    return tuple(Shape("line", ((x, y), (x, y + 0.06)), 0.014) for x in np.linspace(x0, x1, count))


@dataclass(frozen=True)
class Category:
    """A garment type: its silhouette, seam lines, plausible materials and caption detail sentences."""

    name: str
    shapes: tuple[Shape, ...]
    seams: tuple[tuple[Point, ...], ...]
    materials: tuple[str, ...]
    notes: tuple[str, ...]


CATEGORIES: Mapping[str, Category] = MappingProxyType(
    {
        c.name: c
        for c in (
            Category(
                "t-shirt",
                (_symmetric("50,21 42,14 34,15 12,30 19,43 30,37 30,86 50,86"),),
                _seams("42,15 50,24 58,15", "30,81 70,81"),
                ("cotton", "linen", "silk"),
                ("Short sleeves, crew neck.", "Short sleeves, relaxed fit.", "Crew neck, straight hem."),
            ),
            Category(
                "jacket",
                (_symmetric("50,20 43,11 34,12 20,20 10,80 20,82 28,42 28,88 50,88"),),
                _seams("50,38 50,88") + _seams("43,11 46,34 50,38", "33,66 44,66", mirror=True),
                ("denim", "leather", "wool", "suede"),
                ("Long sleeves, notched lapels, zip closure.", "Long sleeves, two flap pockets."),
            ),
            Category(
                "dress",
                (_symmetric("50,22 44,20 44,8 40,8 37,30 42,42 17,90 50,92"),),
                _seams("42,42 58,42"),
                ("cotton", "silk", "linen", "wool"),
                ("Sleeveless with thin straps, flared skirt.", "Fitted bodice, midi length."),
            ),
            Category(
                "trousers",
                (_symmetric("50,10 30,10 25,92 44,92 50,32"),),
                _seams("30,16 70,16", "50,16 50,30"),
                ("cotton", "denim", "wool", "linen"),
                ("Straight leg, belt loops, zip fly.", "High waist, full length."),
            ),
            Category(
                "shorts",
                (_symmetric("50,24 26,24 17,72 42,76 50,46"),),
                _seams("26,31 74,31", "50,31 50,44"),
                ("denim", "cotton", "linen"),
                ("Mid-thigh length, belt loops.", "Relaxed fit, elasticated waist."),
            ),
            Category(
                "skirt",
                (_symmetric("50,20 35,20 16,80 50,82"),),
                _seams("35,27 65,27") + _seams("43,27 37,80", mirror=True),
                ("denim", "leather", "silk", "wool", "cotton"),
                ("A-line silhouette, knee length.", "High waist, concealed zip."),
            ),
            Category(
                "boots",
                (_polygon("32,10 56,10 58,58 80,68 88,78 88,88 56,88 53,82 41,82 39,88 30,88 30,50"),),
                _seams("32,17 56,17", "56,84 88,84"),
                ("leather", "suede", "canvas"),
                ("Mid-calf shaft, low heel.", "Round toe, rubber sole."),
            ),
            Category(
                "handbag",
                (_symmetric("50,42 20,42 14,86 50,86"), _arc((0.5, 0.43), (0.19, 0.26), (180, 360), 0.045)),
                _seams("20,44 50,60 80,44"),
                ("leather", "suede", "canvas"),
                ("Top handle, flap closure.", "Structured shape, single handle."),
            ),
            Category(
                "hat",
                (Shape("ellipse", _points("8,56 92,72")), _symmetric("50,30 40,27 30,33 28,63 50,65")),
                _seams("29,56 71,56", "44,29 50,36 56,29"),
                ("wool", "cotton", "canvas"),
                ("Wide brim, pinched crown.", "Fedora shape with a ribbon band."),
            ),
            Category(
                "scarf",
                (
                    _arc((0.5, 0.22), (0.19, 0.1), (0, 360), 0.08, n=32),
                    _polygon("40,28 52,30 50,82 36,80"),
                    _polygon("52,30 63,28 68,74 55,76"),
                    *_fringe(0.37, 0.49, 0.81),
                    *_fringe(0.56, 0.67, 0.75),
                ),
                (),
                ("wool", "silk", "cotton"),
                ("Long shape with fringed ends.", "Lightweight, fringed ends."),
            ),
        )
    }
)


# --- colours and patterns

COLOURS: Mapping[str, RGB] = MappingProxyType(
    {
        "black": (28, 28, 32),
        "white": (246, 246, 242),
        "grey": (128, 128, 134),
        "red": (200, 30, 38),
        "pink": (242, 150, 182),
        "orange": (240, 120, 30),
        "yellow": (240, 204, 40),
        "green": (40, 128, 60),
        "navy": (28, 38, 96),
        "purple": (118, 50, 140),
        "brown": (110, 68, 38),
        "beige": (214, 194, 158),
    }
)


def _solid(u: Array, v: Array, period: float) -> Array:
    """No ink: the garment keeps its base colour everywhere."""
    return np.zeros_like(u)


def _striped(u: Array, v: Array, period: float) -> Array:
    """Horizontal bands, the most common fashion stripe."""
    return ((v / period) % 1.0 < 0.5).astype(np.float32)


def _polka_dot(u: Array, v: Array, period: float) -> Array:
    """Round dots on a square lattice, small enough to stay distinct from the floral print."""
    du, dv = (u / period) % 1.0 - 0.5, (v / period) % 1.0 - 0.5
    return (du * du + dv * dv < 0.3**2).astype(np.float32)


def _checked(u: Array, v: Array, period: float) -> Array:
    """Gingham: half-tone bands whose crossings are full tone, the look of a woven check."""
    return 0.5 * (((u / period) % 1.0 < 0.5).astype(np.float32) + ((v / period) % 1.0 < 0.5))


def _chevron(u: Array, v: Array, period: float) -> Array:
    """Zig-zag bands, distinguishable from stripes by their slanted edges."""
    zig = np.abs((u / period) % 1.0 - 0.5)
    return ((v / period + zig) % 1.0 < 0.5).astype(np.float32)


PETAL_CENTRES = tuple(
    (0.17 * math.cos(math.radians(a)), 0.17 * math.sin(math.radians(a))) for a in range(-90, 270, 72)
)


def _floral(u: Array, v: Array, period: float) -> Array:
    """Five-petal flowers on a staggered lattice, large enough to read as flowers rather than dots."""
    row = np.floor(v / period)
    fu, fv = (u / period + 0.5 * (row % 2)) % 1.0 - 0.5, (v / period) % 1.0 - 0.5
    petals = np.zeros_like(u, dtype=bool)
    for cu, cv in PETAL_CENTRES:
        petals |= (fu - cu) ** 2 + (fv - cv) ** 2 < 0.11**2
    return petals.astype(np.float32)


@dataclass(frozen=True)
class Pattern:
    """A print: how captions name it and how to ink it inside the garment mask."""

    name: str
    title: str
    phrase: str
    ink: Callable[[Array, Array, float], Array]
    period: float


PATTERNS: Mapping[str, Pattern] = MappingProxyType(
    {
        p.name: p
        for p in (
            Pattern("solid", "solid {colour}", "a plain solid finish", _solid, 1.0),
            Pattern("striped", "{colour} striped", "a striped pattern", _striped, 0.1),
            Pattern("polka-dot", "{colour} polka-dot", "a polka-dot pattern", _polka_dot, 0.1),
            Pattern("checked", "{colour} checked", "a checked pattern", _checked, 0.12),
            Pattern("chevron", "{colour} chevron", "a chevron pattern", _chevron, 0.12),
            Pattern("floral", "{colour} floral", "a floral pattern", _floral, 0.2),
        )
    }
)


# --- material textures


def _blocky_noise(rng: np.random.Generator, size: int, block: int) -> Array:
    """Noise in square blocks, so a texture survives the final 2x downsampling."""
    cells = -(-size // block)
    return np.kron(rng.standard_normal((cells, cells)), np.ones((block, block)))[:size, :size]


def _cotton(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Cotton is matte and even: only a faint grain."""
    return 1.0 + 0.03 * _blocky_noise(rng, x.shape[0], 2)


def _linen(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Linen shows irregular slub threads running across the weave."""
    return 1.0 + 0.04 * rng.standard_normal((x.shape[0], 1)) + 0.02 * _blocky_noise(rng, x.shape[0], 2)


def _denim(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Denim's diagonal twill lines."""
    return 1.0 + 0.08 * np.where(((x + y) // 2) % 2 == 0, 1.0, -1.0)


def _wool(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Wool reads as a coarse, fuzzy speckle of knit stitches."""
    return 1.0 + 0.08 * _blocky_noise(rng, x.shape[0], 4)


def _leather(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Leather has a glossy highlight over a fine grain."""
    size = x.shape[0]
    glow = 1.0 / (1.0 + ((x / size - 0.4) ** 2 + (y / size - 0.32) ** 2) / 0.01)
    return 1.0 + 0.28 * glow**2 + 0.03 * _blocky_noise(rng, size, 2)


def _silk(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Silk catches light in broad soft diagonal sheen bands."""
    phase = (1.5 * (x + 0.6 * y) / x.shape[0]) % 1.0
    return 0.87 + 0.52 * np.abs(phase - 0.5)


def _suede(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Suede is matte and velvety: a dimmed surface with only a faint nap."""
    return 0.86 + 0.025 * _blocky_noise(rng, x.shape[0], 2)


def _canvas(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Canvas shows a fine square weave."""
    return 1.0 - 0.09 * ((x % 4 == 0) | (y % 4 == 0))


MATERIALS: Mapping[str, Callable[[Array, Array, np.random.Generator], Array]] = MappingProxyType(
    {
        "cotton": _cotton,
        "linen": _linen,
        "denim": _denim,
        "wool": _wool,
        "leather": _leather,
        "silk": _silk,
        "suede": _suede,
        "canvas": _canvas,
    }
)


# --- products


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


@dataclass(frozen=True)
class Difficulty:
    """How hard retrieval on the catalogue is; the defaults give the plain `make demo` catalogue."""

    # fewest and most shots per product
    views: tuple[int, int] = (2, 3)
    # share of each split's products planned in groups of GROUP_SIZES that differ in one attribute of VARIED
    near_duplicates: float = 0.0
    # share of each split's products whose group's captions leave that attribute out, so they read the same
    identical_captions: float = 0.0
    # Fashion-Gen-like copy (fit, composition, care, provenance) instead of the title plus a detail note
    long_captions: bool = False

    def __post_init__(self) -> None:
        """Identical captions are drawn from near-duplicate groups, so their share cannot be larger."""
        if self.identical_captions > self.near_duplicates:
            raise ValueError("identical captions are drawn from near-duplicate groups: share too large")

    def as_json(self) -> dict:
        """The options as the stamp file stores them (a tuple reads back from JSON as a list)."""
        return {**asdict(self), "views": list(self.views)}


DEFAULT_DIFFICULTY = Difficulty()
HARD = Difficulty(views=(4, 6), near_duplicates=0.5, identical_captions=0.15, long_captions=True)
HARD_PRODUCTS: Mapping[str, int] = MappingProxyType({"train": 400, "val": 100, "test": 120})


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


def _draw_captions(
    attributes: tuple[str, str, str | None, str | None], rng: random.Random, long: bool
) -> tuple[str, str]:
    """Captions for attributes (None: left unsaid), either the short default ones or long product copy."""
    category, colour, pattern, material = attributes
    note = rng.choice(CATEGORIES[category].notes)
    if not long:
        return product_captions(category, colour, pattern, material, note)
    title = _title(category, colour, pattern, material)
    return long_caption(title, note, category, material, rng), _paraphrase(*attributes)


def _attribute_combinations() -> list[Combo]:
    """Every (category, colour, pattern, material) the catalogue can contain, in a fixed order."""
    return [
        (cat.name, colour, pattern, material)
        for cat in CATEGORIES.values()
        for material in cat.materials
        for colour in COLOURS
        for pattern in PATTERNS
    ]


def _build_products(
    entries: Sequence[tuple[Combo, tuple[str, str] | None]], first_index: int, rng: random.Random, long: bool
) -> list[Product]:
    """Number the products and seed their looks; an entry without captions gets its own drawn here."""
    products = []
    for index, (combo, captions) in enumerate(entries, first_index):
        captions = captions or _draw_captions(combo, rng, long)
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
    return [
        (category, colour, pattern, other) for other in CATEGORIES[category].materials if other != material
    ]


def _masked(combo: Combo, attribute: str) -> tuple[str, str, str | None, str | None]:
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
        captions = _draw_captions(_masked(base, attribute), rng, difficulty.long_captions) if shared else None
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


# --- rendering


def _luminance(rgb: Sequence[float]) -> float:
    """Perceived brightness, to pick inks and outlines that contrast with the base colour."""
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _contrast_ink(rgb: Sequence[float]) -> RGB:
    """Pattern ink: off-white on dark garments, near-black on light ones (like real two-tone prints)."""
    return (238, 236, 230) if _luminance(rgb) < 150 else (40, 38, 48)


def _seam_colour(rgb: Sequence[float]) -> RGB:
    """Outline and seam colour: a darker shade, or a lighter one where the garment is already near black."""
    if _luminance(rgb) < 70:
        return tuple(int(min(255, c + 75)) for c in rgb)
    return tuple(int(c * 0.5) for c in rgb)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, size: int) -> None:
    """Fill one silhouette piece into the mask, scaled from unit to pixel coordinates."""
    points = [(x * size, y * size) for x, y in shape.points]
    if shape.kind == "polygon":
        draw.polygon(points, fill=255)
    elif shape.kind == "ellipse":
        draw.ellipse(points, fill=255)
    elif shape.kind == "line":
        draw.line(points, fill=255, width=max(1, round(shape.width * size)), joint="curve")
    else:
        raise ValueError(f"unknown shape kind {shape.kind!r}")


def garment_mask(category: str, size: int) -> Image.Image:
    """The category's silhouette as an L mask, the region patterns and textures are confined to."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for shape in CATEGORIES[category].shapes:
        _draw_shape(draw, shape, size)
    return mask


def _fabric(product: Product, size: int) -> tuple[Image.Image, RGB]:
    """The printed, textured cloth filling the whole canvas, plus the seam colour that goes with it."""
    rng = np.random.default_rng(product.seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    pattern = PATTERNS[product.pattern]
    phase_u, phase_v = rng.uniform(0.0, 1.0, 2)
    period = pattern.period * rng.uniform(0.85, 1.15)
    base = np.clip(np.array(COLOURS[product.colour]) + rng.integers(-8, 9, 3), 0, 255).astype(np.float32)
    ink = pattern.ink(x / size + phase_u * period, y / size + phase_v * period, period)[..., None]
    rgb = base + (np.array(_contrast_ink(base), dtype=np.float32) - base) * ink
    rgb *= MATERIALS[product.material](x, y, rng).astype(np.float32)[..., None]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB"), _seam_colour(base)


def _garment_layer(product: Product, size: int) -> Image.Image:
    """The product in canonical pose as RGBA (printed, textured, outlined), drawn once for all its views."""
    body, seam = _fabric(product, size)
    draw = ImageDraw.Draw(body)
    for line in CATEGORIES[product.category].seams:
        points = [(px * size, py * size) for px, py in line]
        draw.line(points, fill=seam, width=max(1, size // 90), joint="curve")
    mask = garment_mask(product.category, size)
    layer = Image.new("RGBA", (size, size), (*seam, 0))
    layer.putalpha(mask.filter(ImageFilter.MaxFilter(2 * max(1, size // 120) + 1)))
    layer.paste(body, mask=mask)
    return layer


def _view_transform(rng: random.Random, size: int) -> tuple[float, ...]:
    """Inverse affine map for a small random rotation, zoom and shift, like re-shooting the product."""
    angle = math.radians(rng.uniform(-10.0, 10.0))
    scale = rng.uniform(0.84, 1.04)
    shift_x, shift_y = (rng.uniform(-0.06, 0.06) * size for _ in range(2))
    a, b = math.cos(angle) / scale, math.sin(angle) / scale
    centre = size / 2.0
    out_x, out_y = centre + shift_x, centre + shift_y
    return (a, b, centre - a * out_x - b * out_y, -b, a, centre + b * out_x - a * out_y)


def _background(rng: random.Random, size: int) -> Image.Image:
    """A light studio backdrop whose shade and slight tint vary between shots."""
    level = rng.uniform(200.0, 238.0)
    tint = np.array([rng.uniform(-4.0, 4.0) for _ in range(3)])
    column = np.clip(level + tint + np.linspace(8.0, -8.0, size)[:, None, None], 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(column, size, axis=1), "RGB")


def render_views(
    product: Product, image_size: int = 96, views: tuple[int, int] = DEFAULT_DIFFICULTY.views
) -> list[Image.Image]:
    """`views` (fewest, most) jittered shots of the product, so image-image pairs of one product exist."""
    size = image_size * SUPERSAMPLE
    layer = _garment_layer(product, size)
    rng = random.Random(product.seed)
    shots = []
    for _ in range(rng.choice(range(views[0], views[1] + 1))):
        posed = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else layer
        posed = posed.transform(
            (size, size), Image.Transform.AFFINE, _view_transform(rng, size), Image.Resampling.BILINEAR
        )
        shot = _background(rng, size)
        shot.paste(posed, mask=posed)
        shots.append(shot.reduce(SUPERSAMPLE))
    return shots


def _jpeg(image: Image.Image) -> bytes:
    """Encode a view; 4:4:4 chroma keeps thin coloured stripes intact at 96 px."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def product_samples(
    product: Product,
    split: str,
    first_index: int,
    image_size: int,
    views: tuple[int, int] = DEFAULT_DIFFICULTY.views,
) -> Iterator[dict]:
    """WebDataset samples for every view of a product, keyed `{split}_{index:06d}`."""
    meta = json.dumps(product.metadata()).encode("utf-8")
    caption = product.captions[0].encode("utf-8")
    for offset, view in enumerate(render_views(product, image_size, views)):
        key = f"{split}_{first_index + offset:06d}"
        yield {"__key__": key, "jpg": _jpeg(view), "txt": caption, "json": meta}


# --- catalogue


def _generation_params(
    products: Mapping[str, int], image_size: int, seed: int, shard_size: int, difficulty: Difficulty
) -> dict:
    """What determines the catalogue's bytes, stamped beside it so a rerun knows whether it may skip."""
    params = {
        "version": GENERATOR_VERSION,
        "products": dict(products),
        "image_size": image_size,
        "seed": seed,
        "shard_size": shard_size,
    }
    # the default catalogue's stamp has no difficulty entry, so it keeps the bytes it always had
    return params if difficulty == DEFAULT_DIFFICULTY else params | {"difficulty": difficulty.as_json()}


def generate_demo_catalogue(
    out_dir: str | Path,
    products: Mapping[str, int] = DEFAULT_PRODUCTS,
    image_size: int = 96,
    seed: int = 0,
    shard_size: int = 500,
    progress: bool = False,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
) -> dict[str, Manifest]:
    """Write `out_dir/{split}/demo-{split}-NNNNNN.tar` and manifests; same arguments give the same bytes.

    The stamp file is removed first and written last, so only a run that finished counts as complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / STAMP_NAME
    stamp.unlink(missing_ok=True)
    plan = plan_products(products, seed, difficulty)
    manifests = {}
    bar = tqdm(total=sum(products.values()), unit="product", desc="demo catalogue", disable=not progress)
    with bar:
        for split, items in plan.items():
            with ShardSink(out / split, f"demo-{split}", shard_size) as sink:
                for product in items:
                    for sample in product_samples(
                        product, split, sink.num_samples, image_size, difficulty.views
                    ):
                        sink.write(sample)
                    bar.update()
                manifests[split] = sink.close()
    tmp = stamp.with_name(STAMP_NAME + ".tmp")
    params = _generation_params(products, image_size, seed, shard_size, difficulty)
    tmp.write_text(json.dumps(params, indent=2))
    os.replace(tmp, stamp)
    return manifests


def catalogue_is_complete(
    out_dir: str | Path,
    products: Mapping[str, int] | None = None,
    image_size: int | None = None,
    seed: int | None = None,
    shard_size: int | None = None,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
) -> bool:
    """True if a finished catalogue with intact shards is there, made with the arguments that are given.

    `difficulty` is always compared, so a hard catalogue never passes for a default one or vice versa.
    """
    out = Path(out_dir)
    try:
        stamp = json.loads((out / STAMP_NAME).read_text())
        manifests = [read_manifest(out / split) for split in stamp["products"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    wanted = {
        "version": GENERATOR_VERSION,
        "products": None if products is None else dict(products),
        "image_size": image_size,
        "seed": seed,
        "shard_size": shard_size,
    }
    if any(value is not None and stamp.get(key) != value for key, value in wanted.items()):
        return False
    if stamp.get("difficulty", DEFAULT_DIFFICULTY.as_json()) != difficulty.as_json():
        return False
    return all(
        (out / split / shard.name).is_file() and sha256_file(out / split / shard.name) == shard.sha256
        for split, manifest in zip(stamp["products"], manifests, strict=True)
        for shard in manifest.shards
    )


def _summary(counts: Mapping[str, int], manifests: Mapping[str, Manifest]) -> str:
    """One line per split, so a user sees at a glance what was written."""
    return "\n".join(
        f"  {split:<5} {counts[split]:>5} products {m.num_samples:>6} images {len(m.shards):>3} shards"
        for split, m in manifests.items()
    )


def _counts_text(counts: Mapping[str, int]) -> str:
    """Split sizes as the --products option takes them, for its help text."""
    return " ".join(str(counts[split]) for split in SPLITS)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options mirroring `generate_demo_catalogue`'s arguments."""
    parser = argparse.ArgumentParser(
        prog="fashion-clip-demo-data", description="Generate the embedded synthetic fashion catalogue."
    )
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output directory")
    parser.add_argument("--force", action="store_true", help="regenerate even if a complete catalogue exists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=96, help="image side in pixels")
    parser.add_argument(
        "--products",
        type=int,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        help=f"number of products per split (default {_counts_text(DEFAULT_PRODUCTS)}, "
        f"with --hard {_counts_text(HARD_PRODUCTS)})",
    )
    parser.add_argument("--shard-size", type=int, default=500, help="samples per tar shard")
    parser.add_argument(
        "--hard",
        action="store_true",
        help="4-6 views per product, near-duplicate products, long Fashion-Gen-like captions, and "
        "near-duplicates whose captions are identical",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: build the catalogue unless an identical complete one is already there."""
    args = _parse_args(argv)
    difficulty = HARD if args.hard else DEFAULT_DIFFICULTY
    if args.products:
        counts = dict(zip(SPLITS, args.products, strict=True))
    else:
        counts = dict(HARD_PRODUCTS if args.hard else DEFAULT_PRODUCTS)
    params = dict(
        products=counts,
        image_size=args.image_size,
        seed=args.seed,
        shard_size=args.shard_size,
        difficulty=difficulty,
    )
    if not args.force and catalogue_is_complete(args.out, **params):
        print(f"{args.out}: demo catalogue already complete, skipping (use --force to regenerate)")
        return 0
    start = time.perf_counter()
    manifests = generate_demo_catalogue(args.out, progress=True, **params)
    print(f"{args.out}: demo catalogue written in {time.perf_counter() - start:.1f}s")
    print(_summary(counts, manifests))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
