"""Garment silhouettes: the filled pieces and seam lines each garment type of the demo is drawn from."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class Shape:
    """One filled piece of a silhouette in unit coordinates (y down): polygon, ellipse box or thick line."""

    kind: str
    points: tuple[Point, ...]
    width: float = 0.0


@dataclass(frozen=True)
class Silhouette:
    """A garment type's outline pieces and the seam lines drawn inside them."""

    shapes: tuple[Shape, ...]
    seams: tuple[tuple[Point, ...], ...] = ()


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


# the garment types, in the order that fixes which products a seed draws
SILHOUETTES: Mapping[str, Silhouette] = MappingProxyType(
    {
        "t-shirt": Silhouette(
            (_symmetric("50,21 42,14 34,15 12,30 19,43 30,37 30,86 50,86"),),
            _seams("42,15 50,24 58,15", "30,81 70,81"),
        ),
        "jacket": Silhouette(
            (_symmetric("50,20 43,11 34,12 20,20 10,80 20,82 28,42 28,88 50,88"),),
            _seams("50,38 50,88") + _seams("43,11 46,34 50,38", "33,66 44,66", mirror=True),
        ),
        "dress": Silhouette(
            (_symmetric("50,22 44,20 44,8 40,8 37,30 42,42 17,90 50,92"),), _seams("42,42 58,42")
        ),
        "trousers": Silhouette(
            (_symmetric("50,10 30,10 25,92 44,92 50,32"),), _seams("30,16 70,16", "50,16 50,30")
        ),
        "shorts": Silhouette(
            (_symmetric("50,24 26,24 17,72 42,76 50,46"),), _seams("26,31 74,31", "50,31 50,44")
        ),
        "skirt": Silhouette(
            (_symmetric("50,20 35,20 16,80 50,82"),),
            _seams("35,27 65,27") + _seams("43,27 37,80", mirror=True),
        ),
        "boots": Silhouette(
            (_polygon("32,10 56,10 58,58 80,68 88,78 88,88 56,88 53,82 41,82 39,88 30,88 30,50"),),
            _seams("32,17 56,17", "56,84 88,84"),
        ),
        "handbag": Silhouette(
            (_symmetric("50,42 20,42 14,86 50,86"), _arc((0.5, 0.43), (0.19, 0.26), (180, 360), 0.045)),
            _seams("20,44 50,60 80,44"),
        ),
        "hat": Silhouette(
            (Shape("ellipse", _points("8,56 92,72")), _symmetric("50,30 40,27 30,33 28,63 50,65")),
            _seams("29,56 71,56", "44,29 50,36 56,29"),
        ),
        "scarf": Silhouette(
            (
                _arc((0.5, 0.22), (0.19, 0.1), (0, 360), 0.08, n=32),
                _polygon("40,28 52,30 50,82 36,80"),
                _polygon("52,30 63,28 68,74 55,76"),
                *_fringe(0.37, 0.49, 0.81),
                *_fringe(0.56, 0.67, 0.75),
            )
        ),
    }
)
