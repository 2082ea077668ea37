"""The renderer's shared tables and colour arithmetic: the label colours (:data:`COLOURS`), the pattern names
(:data:`PATTERNS`), and the shades, contrasts and accents every product and texture derives from them."""

from __future__ import annotations

import math
import random
from typing import Iterable, Sequence

__all__ = ["RGB", "COLOURS", "PATTERNS", "COLOUR_BY_KEY", "METALLIC", "value_key", "shade", "colour_distance",
           "luminance", "edge_colour", "contrast_colour", "pick_accent", "jitter_colour"]

RGB = tuple[int, int, int]


def value_key(value: str) -> str:
    """A value's spelling-blind key: "Polka Dot", "polka-dot" and "polkadot" are one value."""
    return "".join(ch for ch in value.casefold() if ch.isalnum())


COLOURS: dict[str, RGB] = {
    "Black": (28, 28, 30),
    "White": (246, 246, 244),
    "Grey": (128, 128, 132),
    "Silver": (196, 198, 206),
    "Gold": (212, 172, 52),
    "Navy Blue": (22, 34, 98),
    "Blue": (34, 98, 214),
    "Teal": (0, 128, 128),
    "Green": (30, 140, 62),
    "Olive": (108, 116, 38),
    "Yellow": (244, 212, 40),
    "Orange": (240, 120, 28),
    "Red": (206, 28, 40),
    "Maroon": (118, 18, 42),
    "Pink": (242, 128, 172),
    "Purple": (112, 42, 146),
    "Brown": (104, 62, 30),
    "Tan": (194, 142, 88),
    "Beige": (224, 204, 166),
    "Cream": (250, 240, 212),
}
COLOUR_BY_KEY = {value_key(k): v for k, v in COLOURS.items()}
METALLIC = {"silver", "gold"}

PATTERNS: tuple[str, ...] = (
    "Solid", "Striped", "Checkered", "Polka Dot", "Floral", "Geometric", "Abstract", "Animal Print",
    "Camouflage", "Graphic Print", "Colorblock", "Textured", "Chevron", "Paisley",
)

# Contrasting colours a pattern may use as its second colour (the labelled colour stays the dominant one).
_ACCENTS: tuple[RGB, ...] = tuple(
    COLOURS[n] for n in ("White", "Black", "Yellow", "Red", "Blue", "Green", "Pink", "Orange", "Navy Blue", "Cream")
)


def shade(c: Sequence[float], f: float) -> RGB:
    """f < 1 darkens towards black, f > 1 lightens towards white."""
    if f <= 1:
        return tuple(max(0, min(255, int(v * f))) for v in c[:3])  # type: ignore[return-value]
    t = min(1.0, f - 1)
    return tuple(max(0, min(255, int(v + (255 - v) * t))) for v in c[:3])  # type: ignore[return-value]


def colour_distance(a: Sequence[int], b: Sequence[int]) -> float:
    """Euclidean distance in RGB."""
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a[:3], b[:3])))


def luminance(c: Sequence[int]) -> float:
    """Perceived brightness, 0 to 255."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def edge_colour(c: RGB) -> RGB:
    """The outline and seam colour of a part of colour ``c``: darker, or lighter on a dark part."""
    return shade(c, 0.55) if luminance(c) > 60 else shade(c, 1.45)


def contrast_colour(c: RGB) -> RGB:
    """Near-black on a light colour, near-white on a dark one (buttons, laces, dial marks)."""
    return (30, 30, 30) if luminance(c) > 140 else (240, 240, 240)


def pick_accent(rng: random.Random, base: RGB, avoid: Iterable[RGB] = ()) -> RGB:
    """A second colour that stands out from ``base`` and from every colour in ``avoid``."""
    avoid = list(avoid)
    ok = [a for a in _ACCENTS if colour_distance(a, base) > 150 and all(colour_distance(a, b) > 60 for b in avoid)]
    return rng.choice(ok or [contrast_colour(base)])


def jitter_colour(rng: random.Random, c: RGB, amount: int = 10) -> RGB:
    """``c`` with each channel moved by up to ``amount``."""
    return tuple(max(0, min(255, v + rng.randint(-amount, amount))) for v in c)  # type: ignore[return-value]
