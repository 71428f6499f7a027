"""Drawing a demo product: its printed, textured garment in canonical pose, then jittered studio shots."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fashion_clip.demo.fabrics import COLOURS, MATERIALS, PATTERNS, RGB
from fashion_clip.demo.presets import DEFAULT_DIFFICULTY
from fashion_clip.demo.products import Product
from fashion_clip.demo.shapes import SILHOUETTES, Shape

# drawn at this multiple of the image size, then reduced, which antialiases every edge
SUPERSAMPLE = 2


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
    for shape in SILHOUETTES[category].shapes:
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
    for line in SILHOUETTES[product.category].seams:
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
