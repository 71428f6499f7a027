"""Cloth of the demo garments: colours, printed patterns and material textures, with what each garment
type can be made of."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

RGB = tuple[int, int, int]
Array = np.ndarray

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


# what each garment type can be made of, in the order that fixes which products a seed draws
GARMENT_MATERIALS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "t-shirt": ("cotton", "linen", "silk"),
        "jacket": ("denim", "leather", "wool", "suede"),
        "dress": ("cotton", "silk", "linen", "wool"),
        "trousers": ("cotton", "denim", "wool", "linen"),
        "shorts": ("denim", "cotton", "linen"),
        "skirt": ("denim", "leather", "silk", "wool", "cotton"),
        "boots": ("leather", "suede", "canvas"),
        "handbag": ("leather", "suede", "canvas"),
        "hat": ("wool", "cotton", "canvas"),
        "scarf": ("wool", "silk", "cotton"),
    }
)
