"""Procedural product images with known ground truth (PIL only, a few ms per view).

Every vertical of ``conf/taxonomy`` has a draw function in :data:`_REGISTRY` that draws one product, in unit
coordinates, on a transparent layer: its recognisable silhouette (suitcase box with handle and wheels, watch with
dial and strap, garments as torso + sleeves, trouser legs, a draped sari with its border, footwear in side or top
view, an ethnic set as top + bottom) and every *visible* attribute as something really drawn: colours from one
shared table (:data:`COLOURS`), patterns as textures filling the part's shape (:data:`PATTERNS`, shared across
verticals), counts as countable objects (wheels, straps, pockets) and shapes as shapes (dial, heel, toe, neckline).

:func:`render_listing` draws the product once and then composes ``n_views`` views of it, each with its own scale,
position/crop, small rotation, mirror, background (plain, gradient, floor/wall, planks, tiles), clutter, people-like
silhouettes, lighting and sensor noise; ``difficulty`` in [0, 1] scales all nuisances (0: a clean centred product on
a near-white background). The first view is the "hero" shot and gets half the difficulty.

Only attributes that the vertical marks ``inferable: true`` are read from the labels; a drawn attribute that the
taxonomy lacks or marks non-inferable is drawn with a fixed default, so non-inferable values never change a pixel.
Everything random comes from the ``random.Random`` passed in, so output is a pure function of its state.
"""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from attrpipe.taxonomy import Vertical

__all__ = [
    "COLOURS",
    "PATTERNS",
    "sample_labels",
    "render_listing",
    "renderable_attributes",
    "check_renderable",
    "RenderError",
]

Pt = tuple[float, float]
RGB = tuple[int, int, int]


class RenderError(ValueError):
    """The renderer cannot draw a vertical, attribute or value (or a visible label is missing)."""


def _key(value: str) -> str:
    return "".join(ch for ch in value.casefold() if ch.isalnum())


# ----------------------------------------------------------------------------------------------------------------
# Shared tables: colours and patterns (every vertical draws from these).

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
_COLOUR_BY_KEY = {_key(k): v for k, v in COLOURS.items()}
_METALLIC = {"silver", "gold"}

PATTERNS: tuple[str, ...] = (
    "Solid", "Striped", "Checkered", "Polka Dot", "Floral", "Geometric", "Abstract", "Animal Print",
    "Camouflage", "Graphic Print", "Colorblock", "Textured", "Chevron", "Paisley",
)

# Contrasting colours a pattern may use as its second colour (the labelled colour stays the dominant one).
_ACCENTS: tuple[RGB, ...] = tuple(
    COLOURS[n] for n in ("White", "Black", "Yellow", "Red", "Blue", "Green", "Pink", "Orange", "Navy Blue", "Cream")
)


def _shade(c: Sequence[float], f: float) -> RGB:
    """f < 1 darkens towards black, f > 1 lightens towards white."""
    if f <= 1:
        return tuple(max(0, min(255, int(v * f))) for v in c[:3])  # type: ignore[return-value]
    t = min(1.0, f - 1)
    return tuple(max(0, min(255, int(v + (255 - v) * t))) for v in c[:3])  # type: ignore[return-value]


def _dist(a: Sequence[int], b: Sequence[int]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a[:3], b[:3])))


def _lum(c: Sequence[int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _edge_colour(c: RGB) -> RGB:
    return _shade(c, 0.55) if _lum(c) > 60 else _shade(c, 1.45)


def _contrast(c: RGB) -> RGB:
    return (30, 30, 30) if _lum(c) > 140 else (240, 240, 240)


def _accent(rng: random.Random, base: RGB, avoid: Iterable[RGB] = ()) -> RGB:
    avoid = list(avoid)
    ok = [a for a in _ACCENTS if _dist(a, base) > 150 and all(_dist(a, b) > 60 for b in avoid)]
    return rng.choice(ok or [_contrast(base)])


def _jitter(rng: random.Random, c: RGB, amount: int = 10) -> RGB:
    return tuple(max(0, min(255, v + rng.randint(-amount, amount))) for v in c)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------------
# Geometry helpers.

def _spline(points: Sequence[Pt], closed: bool = True, steps: int = 6) -> list[Pt]:
    """Catmull-Rom spline through ``points``: smooth outlines from a few control points."""
    n = len(points)
    out: list[Pt] = []
    segs = n if closed else n - 1
    for i in range(segs):
        p0 = points[(i - 1) % n] if closed or i > 0 else points[0]
        p1 = points[i]
        p2 = points[(i + 1) % n]
        p3 = points[(i + 2) % n] if closed or i + 2 < n else points[-1]
        for s in range(steps):
            t = s / steps
            t2, t3 = t * t, t * t * t
            out.append(tuple(  # type: ignore[arg-type]
                0.5 * (2 * p1[k] + (-p0[k] + p2[k]) * t + (2 * p0[k] - 5 * p1[k] + 4 * p2[k] - p3[k]) * t2
                       + (-p0[k] + 3 * p1[k] - 3 * p2[k] + p3[k]) * t3)
                for k in range(2)
            ))
    if not closed:
        out.append(points[-1])
    return out


def _blob(rng: random.Random, cx: float, cy: float, r: float, n: int = 7, wobble: float = 0.35) -> list[Pt]:
    pts = []
    for i in range(n):
        a = 2 * math.pi * i / n + rng.uniform(-0.2, 0.2)
        rr = r * (1 + rng.uniform(-wobble, wobble))
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return _spline(pts, closed=True, steps=4)


def _star(cx: float, cy: float, r: float, points: int = 5, inner: float = 0.45, rot: float = -math.pi / 2) -> list[Pt]:
    out = []
    for i in range(points * 2):
        rr = r if i % 2 == 0 else r * inner
        a = rot + math.pi * i / points
        out.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Pattern textures. Each draws on a canvas-sized RGB image already filled with the base colour, covering all of it;
# ``box`` (pixels) is the reference area - the product's main patterned region - that sets the pattern's scale and
# where placed motifs (a graphic, colour blocks) go, so a pattern is continuous across a product's parts (body,
# sleeves, pockets) and looks the same at any product size.

Box = tuple[float, float, float, float]


def _steps(anchor: float, period: float, limit: float) -> list[float]:
    """Positions ``anchor + k * period`` covering [-period, limit + period]."""
    start = anchor - math.ceil((anchor + period) / period) * period
    out, x = [], start
    while x < limit + period:
        out.append(x)
        x += period
    return out


def _period(box: Box, lo: float, hi: float, rng: random.Random, minimum: float = 5.0) -> float:
    return max(minimum, max(box[2] - box[0], box[3] - box[1]) / rng.uniform(lo, hi))


def _tex_solid(d, W, H, box, base, acc, rng):
    pass


def _tex_striped(d, W, H, box, base, acc, rng):
    period = _period(box, 8, 11, rng)
    sw = max(2, int(period * 0.38))
    if rng.random() < 0.5:  # horizontal
        for y in _steps(box[1] + rng.uniform(0, period), period, H):
            d.rectangle([0, y, W, y + sw], fill=acc)
    else:
        for x in _steps(box[0] + rng.uniform(0, period), period, W):
            d.rectangle([x, 0, x + sw, H], fill=acc)


def _tex_checkered(d, W, H, box, base, acc, rng):
    period = _period(box, 6, 8, rng, 6.0)
    lw = max(2, int(period * 0.3))
    for y in _steps(box[1] + rng.uniform(0, period), period, H):
        d.rectangle([0, y, W, y + lw], fill=acc)
    for x in _steps(box[0] + rng.uniform(0, period), period, W):
        d.rectangle([x, 0, x + lw, H], fill=acc)


def _lattice(box: Box, period: float, W: int, H: int, row_step: float = 1.0, offset_rows: bool = True):
    for j, y in enumerate(_steps(box[1] + period / 2, period * row_step, H)):
        shift = period / 2 if offset_rows and round((y - box[1]) / (period * row_step)) % 2 else 0.0
        for x in _steps(box[0] + period / 2 + shift, period, W):
            yield j, x, y


def _tex_polka(d, W, H, box, base, acc, rng):
    period = _period(box, 6, 8, rng, 6.0)
    r = period * 0.2
    for _, x, y in _lattice(box, period, W, H, 0.87):
        d.ellipse([x - r, y - r, x + r, y + r], fill=acc)


def _flower(d, x, y, r, petal, centre):
    for k in range(5):
        a = 2 * math.pi * k / 5
        px, py = x + r * 0.55 * math.cos(a), y + r * 0.55 * math.sin(a)
        d.ellipse([px - r * 0.45, py - r * 0.45, px + r * 0.45, py + r * 0.45], fill=petal)
    d.ellipse([x - r * 0.3, y - r * 0.3, x + r * 0.3, y + r * 0.3], fill=centre)


def _tex_floral(d, W, H, box, base, acc, rng):
    period = _period(box, 4.5, 6, rng, 8.0)
    centre = (250, 220, 60) if _dist(acc, (250, 220, 60)) > 80 else (255, 255, 255)
    leaf = (40, 130, 60) if _dist(base, (40, 130, 60)) > 80 else (240, 240, 240)
    for _, x, y in _lattice(box, period, W, H, 1.0, offset_rows=False):
        fx, fy = x + rng.uniform(-0.2, 0.2) * period, y + rng.uniform(-0.2, 0.2) * period
        r = period * rng.uniform(0.28, 0.36)
        d.ellipse([fx + r * 0.6, fy + r * 0.5, fx + r * 1.3, fy + r * 0.9], fill=leaf)
        _flower(d, fx, fy, r, acc, centre)


def _tex_geometric(d, W, H, box, base, acc, rng):
    period = _period(box, 5, 7, rng, 8.0)
    s = period * 0.32
    for j, x, y in _lattice(box, period, W, H, 1.0, offset_rows=False):
        if (j + round((x - box[0]) / period)) % 2 == 0:
            d.polygon([(x, y - s), (x + s, y + s * 0.8), (x - s, y + s * 0.8)], fill=acc)
        else:
            d.polygon([(x, y - s), (x + s, y), (x, y + s), (x - s, y)], outline=acc, width=max(1, int(s / 3)))


def _scatter(box: Box, cell: float, W: int, H: int, rng: random.Random):
    """One jittered point per ``cell`` over the canvas."""
    for _, x, y in _lattice(box, cell, W, H, 1.0, offset_rows=False):
        yield x + rng.uniform(-0.45, 0.45) * cell, y + rng.uniform(-0.45, 0.45) * cell


def _tex_abstract(d, W, H, box, base, acc, rng):
    acc2 = _accent(rng, base, avoid=[acc])
    cell = _period(box, 2.5, 3.2, rng, 10.0)
    for i, (x, y) in enumerate(_scatter(box, cell, W, H, rng)):
        col = acc if i % 2 == 0 else acc2
        if rng.random() < 0.5:
            pts = [(x + rng.uniform(-1, 1) * cell, y + rng.uniform(-1, 1) * cell) for _ in range(4)]
            d.line(_spline(pts, closed=False, steps=6), fill=col, width=max(2, int(cell * rng.uniform(0.1, 0.18))))
        else:
            d.polygon(_blob(rng, x, y, cell * rng.uniform(0.2, 0.35), wobble=0.5), fill=col)


def _tex_animal(d, W, H, box, base, acc, rng):
    dark = (40, 28, 20) if _lum(base) > 70 else (210, 170, 110)
    inner = _shade(base, 0.75) if _lum(base) > 70 else _shade(base, 1.4)
    period = _period(box, 6, 8, rng, 7.0)
    for cx, cy in _scatter(box, period, W, H, rng):
        r = period * rng.uniform(0.25, 0.34)
        d.polygon(_blob(rng, cx, cy, r * 0.7, n=5, wobble=0.3), fill=inner)
        a0 = rng.uniform(0, 360)
        for k in range(3):
            d.arc([cx - r, cy - r, cx + r, cy + r], a0 + 120 * k, a0 + 120 * k + rng.uniform(60, 95), fill=dark,
                  width=max(2, int(r * 0.35)))


def _tex_camouflage(d, W, H, box, base, acc, rng):
    cols = [_shade(base, 0.6), _shade(base, 1.35), (96, 92, 56) if _dist(base, (96, 92, 56)) > 60 else (40, 40, 30)]
    cell = _period(box, 4, 5, rng, 8.0)
    for i, (x, y) in enumerate(_scatter(box, cell, W, H, rng)):
        d.polygon(_blob(rng, x, y, cell * rng.uniform(0.35, 0.5), n=6, wobble=0.45), fill=cols[i % 3])


def _tex_graphic(d, W, H, box, base, acc, rng):
    cx, cy = (box[0] + box[2]) / 2, box[1] + (box[3] - box[1]) * 0.42
    r = min(box[2] - box[0], box[3] - box[1]) * 0.24
    kind = rng.randrange(3)
    if kind == 0:
        d.polygon(_star(cx, cy, r), fill=acc)
    elif kind == 1:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=acc)
        d.polygon(_star(cx, cy, r * 0.7, points=4, inner=0.35), fill=base)
    else:
        d.polygon([(cx - r * 0.2, cy - r), (cx + r * 0.6, cy - r), (cx + r * 0.1, cy - r * 0.1),
                   (cx + r * 0.6, cy - r * 0.1), (cx - r * 0.4, cy + r), (cx - r * 0.05, cy + r * 0.05),
                   (cx - r * 0.55, cy + r * 0.05)], fill=acc)
    bh = max(2, int(r * 0.18))  # "text" bars under the motif
    for k, frac in enumerate((0.9, 0.6)):
        y = cy + r * 1.25 + k * bh * 1.8
        d.rectangle([cx - r * frac, y, cx + r * frac, y + bh], fill=acc)


def _tex_colorblock(d, W, H, box, base, acc, rng):
    acc2 = _accent(rng, base, avoid=[acc])
    x0, y0, x1, y1 = box
    if rng.random() < 0.5:  # horizontal blocks: the base colour keeps the top half
        d.rectangle([0, y0 + (y1 - y0) * 0.5, W, y0 + (y1 - y0) * 0.75], fill=acc)
        d.rectangle([0, y0 + (y1 - y0) * 0.75, W, H], fill=acc2)
    else:
        xm, ym = x0 + (x1 - x0) * 0.55, y0 + (y1 - y0) * 0.55
        d.rectangle([xm, 0, W, ym], fill=acc)
        d.rectangle([0, ym, xm, H], fill=acc2)


def _tex_textured(d, W, H, box, base, acc, rng):
    tone = _shade(base, 0.72) if _lum(base) > 60 else _shade(base, 1.6)
    step = max(3, int(max(box[2] - box[0], box[3] - box[1]) / 40))
    for i in range(-H, W, step):
        d.line([(i, 0), (i + H, H)], fill=tone, width=1)
    for i in range(0, W + H, step * 2):
        d.line([(i, 0), (i - H, H)], fill=tone, width=1)


def _tex_chevron(d, W, H, box, base, acc, rng):
    period = _period(box, 6, 8, rng, 7.0)
    lw = max(2, int(period * 0.3))
    half = period * 0.6
    for y in _steps(box[1] + rng.uniform(0, period), period, H):
        pts = [(x, y - (half * 0.6 if k % 2 == 0 else 0)) for k, x in enumerate(_steps(box[0], half, W))]
        d.line(pts, fill=acc, width=lw, joint="curve")


def _tex_paisley(d, W, H, box, base, acc, rng):
    period = _period(box, 4, 5.5, rng, 9.0)
    dot = _accent(rng, base, avoid=[acc])
    r = period * 0.26
    for _, x, y in _lattice(box, period, W, H, 1.0):
        flip = -1 if rng.random() < 0.5 else 1
        body = [(x + r * math.cos(a), y + r * math.sin(a)) for a in (0.3 + k * (2 * math.pi - 0.6) / 9
                                                                     for k in range(10))]
        tail = [(x + flip * r * 0.2, y - r * 1.9), (x + flip * r * 0.9, y - r * 0.6)]
        d.polygon(_spline(body[:5] + [tail[1], tail[0]] + body[5:], closed=True, steps=3), fill=acc)
        d.ellipse([x - r * 0.35, y - r * 0.35, x + r * 0.35, y + r * 0.35], fill=dot)


def _tex_embroidery(d, W, H, box, base, acc, rng):
    """Dense motif for detail bands and borders (not a label value)."""
    period = max(5.0, min(min(box[2] - box[0], box[3] - box[1]) / 2.5, 12.0))
    s = period * 0.38
    for _, x, y in _lattice(box, period, W, H, 0.6):
        d.polygon([(x, y - s), (x + s, y), (x, y + s), (x - s, y)], fill=acc)


def _tex_buti(d, W, H, box, base, acc, rng):
    """Sparse small motifs all over (kurta "All Over" detail)."""
    period = _period(box, 6.5, 7.5, rng, 8.0)
    for _, x, y in _lattice(box, period, W, H, 1.0):
        _flower(d, x, y, period * 0.22, acc, acc)


def _tex_mesh(d, W, H, box, base, acc, rng):
    tone = _shade(base, 0.6) if _lum(base) > 60 else _shade(base, 1.8)
    for i in range(-H, W + H, 3):
        d.line([(i, 0), (i + H, H)], fill=tone, width=1)
        d.line([(i, 0), (i - H, H)], fill=tone, width=1)


_PATTERN_FNS: dict[str, Callable] = {
    "solid": _tex_solid, "striped": _tex_striped, "checkered": _tex_checkered, "polkadot": _tex_polka,
    "floral": _tex_floral, "geometric": _tex_geometric, "abstract": _tex_abstract, "animalprint": _tex_animal,
    "camouflage": _tex_camouflage, "graphicprint": _tex_graphic, "colorblock": _tex_colorblock,
    "textured": _tex_textured, "chevron": _tex_chevron, "paisley": _tex_paisley,
    # internal fills, not taxonomy values
    "_embroidery": _tex_embroidery, "_buti": _tex_buti, "_mesh": _tex_mesh,
}
assert all(_key(p) in _PATTERN_FNS for p in PATTERNS)



# ----------------------------------------------------------------------------------------------------------------
# The painter: unit coordinates -> pixels on a transparent layer, with masked pattern fills and outlines.

Shape = tuple  # ("poly", pts) | ("ellipse", (x0, y0, x1, y1)) | ("rrect", (x0, y0, x1, y1), r) | ("line", pts, w)


class Painter:
    """Draws one product in unit coordinates (through the current frame) on a transparent ``size`` layer."""

    def __init__(self, size: int, rng: random.Random):
        self.S = size
        self.rng = rng
        self.img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.d = ImageDraw.Draw(self.img)
        self.ox, self.oy, self.sc = 0.0, 0.0, 1.0
        self.flip = False
        self.jitter = 0
        self.pattern_box: Box = (0.0, 0.0, float(size), float(size))
        self._accents: dict[RGB, RGB] = {}
        self._textures: dict[tuple, Image.Image] = {}

    def colour(self, name: str) -> RGB:
        """A label colour, jittered a little per product (metallics less)."""
        k = _key(name)
        return _jitter(self.rng, _COLOUR_BY_KEY[k], 3 if k in _METALLIC else self.jitter)

    def accent(self, colour: RGB) -> RGB:
        """The product's second colour for patterns on ``colour`` (one per base colour, so parts agree)."""
        if colour not in self._accents:
            self._accents[colour] = _accent(self.rng, colour)
        return self._accents[colour]

    def set_pattern_box(self, b: Sequence[float]) -> None:
        """The unit-coordinate region whose size and centre set the scale and placement of pattern fills."""
        self.pattern_box = tuple(self.box(b))  # type: ignore[assignment]

    # frames: draw a unit-coordinate figure into a sub-box (ethnic set, slipper pair)
    def frame(self, x0: float, y0: float, scale: float, flip: bool = False) -> None:
        self.ox, self.oy, self.sc, self.flip = x0, y0, scale, flip

    def xy(self, x: float, y: float) -> Pt:
        if self.flip:
            x = 1 - x
        return ((self.ox + x * self.sc) * self.S, (self.oy + y * self.sc) * self.S)

    def pts(self, pts: Iterable[Pt]) -> list[Pt]:
        return [self.xy(x, y) for x, y in pts]

    def box(self, b: Sequence[float]) -> list[float]:
        (x0, y0), (x1, y1) = self.xy(b[0], b[1]), self.xy(b[2], b[3])
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    def r(self, v: float) -> float:
        return v * self.sc * self.S

    def w(self, v: float) -> int:
        return max(1, int(round(self.r(v))))

    def _shape(self, d: ImageDraw.ImageDraw, s: Shape, fill) -> None:
        kind = s[0]
        if kind == "poly":
            d.polygon(self.pts(s[1]), fill=fill)
        elif kind == "ellipse":
            d.ellipse(self.box(s[1]), fill=fill)
        elif kind == "rrect":
            d.rounded_rectangle(self.box(s[1]), radius=self.r(s[2]), fill=fill)
        elif kind == "line":
            d.line(self.pts(s[1]), fill=fill, width=self.w(s[2]), joint="curve")
        else:  # pragma: no cover - programming error
            raise ValueError(kind)

    def mask(self, shapes: Iterable[Shape], cut: Iterable[Shape] = (), within: Image.Image | None = None) -> Image.Image:
        m = Image.new("L", (self.S, self.S), 0)
        md = ImageDraw.Draw(m)
        for s in shapes:
            self._shape(md, s, 255)
        for s in cut:
            self._shape(md, s, 0)
        if within is not None:
            m = Image.fromarray(np.minimum(np.asarray(m), np.asarray(within)))
        return m

    def texture(self, pattern: str, colour: RGB, accent: RGB, box: Box, size: tuple[int, int]) -> Image.Image:
        """A ``size`` texture of ``pattern`` laid out over ``box`` (cached per product)."""
        key = (pattern, colour, accent, box, size)
        tex = self._textures.get(key)
        if tex is None:
            tex = Image.new("RGB", size, colour)
            fn = _PATTERN_FNS[pattern if pattern.startswith("_") else _key(pattern)]
            fn(ImageDraw.Draw(tex), size[0], size[1], box, colour, accent, self.rng)
            self._textures[key] = tex
        return tex

    def fill(self, mask: Image.Image, colour: RGB, pattern: str = "solid", *, accent: RGB | None = None,
             outline: RGB | bool | None = True, own_box: bool = False) -> None:
        """Fill ``mask`` with ``pattern`` on ``colour`` and outline the part's edge.

        The texture is laid out over the product's pattern box (so parts continue one print), or over the part's
        own bounding box with ``own_box`` (detail bands, borders).
        """
        box = mask.getbbox()
        if box is None:
            return
        if _key(pattern) == "solid":
            self.img.paste(colour + (255,), (0, 0), mask)
        elif own_box:  # a texture just for this part's bounding box
            w, h = box[2] - box[0], box[3] - box[1]
            tex = self.texture(pattern, colour, accent or self.accent(colour), (0.0, 0.0, float(w), float(h)), (w, h))
            self.img.paste(tex, box[:2], mask.crop(box))
        else:
            tex = self.texture(pattern, colour, accent or self.accent(colour), self.pattern_box, (self.S, self.S))
            self.img.paste(tex.crop(box), box[:2], mask.crop(box))
        if outline:
            col = outline if isinstance(outline, tuple) else _edge_colour(colour)
            pad = (max(0, box[0] - 1), max(0, box[1] - 1), min(self.S, box[2] + 1), min(self.S, box[3] + 1))
            edge = mask.crop(pad).filter(ImageFilter.FIND_EDGES)
            self.img.paste(col + (255,), pad[:2], edge)

    def part(self, shapes: Iterable[Shape], colour: RGB, pattern: str = "solid", *, cut: Iterable[Shape] = (),
             accent: RGB | None = None, outline: RGB | bool | None = True, own_box: bool = False) -> Image.Image:
        m = self.mask(shapes, cut)
        self.fill(m, colour, pattern, accent=accent, outline=outline, own_box=own_box)
        return m

    # direct strokes
    def line(self, pts: Sequence[Pt], colour: RGB, width: float, joint: str | None = None) -> None:
        self.d.line(self.pts(pts), fill=colour + (255,), width=self.w(width), joint=joint)

    def dashed(self, a: Pt, b: Pt, colour: RGB, width: float, dash: float = 0.02) -> None:
        n = max(2, int(math.dist(a, b) / dash))
        for i in range(0, n, 2):
            t0, t1 = i / n, min(1.0, (i + 1) / n)
            self.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                       (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], colour, width)

    def ellipse(self, b: Sequence[float], colour: RGB | None, outline: RGB | None = None, width: float = 0.0) -> None:
        self.d.ellipse(self.box(b), fill=None if colour is None else colour + (255,),
                       outline=None if outline is None else outline + (255,), width=self.w(width) if outline else 0)

    def circle(self, c: Pt, r: float, colour: RGB | None, outline: RGB | None = None, width: float = 0.0) -> None:
        self.ellipse((c[0] - r, c[1] - r, c[0] + r, c[1] + r), colour, outline, width)

    def polygon(self, pts: Sequence[Pt], colour: RGB | None, outline: RGB | None = None, width: float = 0.0) -> None:
        self.d.polygon(self.pts(pts), fill=None if colour is None else colour + (255,),
                       outline=None if outline is None else outline + (255,), width=self.w(width) if outline else 0)

    def rect(self, b: Sequence[float], colour: RGB | None, outline: RGB | None = None, width: float = 0.0,
             radius: float = 0.0) -> None:
        self.d.rounded_rectangle(self.box(b), radius=self.r(radius), fill=None if colour is None else colour + (255,),
                                 outline=None if outline is None else outline + (255,),
                                 width=self.w(width) if outline else 0)


# ----------------------------------------------------------------------------------------------------------------
# Registry of verticals.

@dataclass(frozen=True)
class _Spec:
    draw: Callable[[Painter, dict[str, str]], None]
    attributes: dict[str, tuple[str, ...]]  # attribute -> drawable values (canonical spelling); first = default
    constraints: tuple[Callable[[dict[str, str]], bool], ...] = ()
    mirror: bool = True  # may views show it mirrored? (not a watch: its digits would read backwards)


_REGISTRY: dict[str, _Spec] = {}
_COLOUR_VALUES = tuple(COLOURS)


def _register(name: str, attributes: dict[str, Sequence[str]], constraints: Sequence[Callable] = (),
              mirror: bool = True):
    def deco(fn):
        _REGISTRY[name] = _Spec(fn, {a: tuple(v) for a, v in attributes.items()}, tuple(constraints), mirror)
        return fn

    return deco


def renderable_attributes(vertical: str) -> dict[str, tuple[str, ...]]:
    """What the renderer draws for ``vertical``: attribute -> drawable values."""
    try:
        return dict(_REGISTRY[vertical].attributes)
    except KeyError:
        raise RenderError(f"no renderer for vertical {vertical!r}; known: {sorted(_REGISTRY)}") from None


def check_renderable(vertical: Vertical) -> None:
    """Raise :class:`RenderError` unless every inferable attribute and value of ``vertical`` is really drawn."""
    drawn = renderable_attributes(vertical.name)
    problems = []
    for a in vertical.inferable_attributes():
        if a.name not in drawn:
            problems.append(f"inferable attribute {a.name!r} is not drawn (drawn: {sorted(drawn)})")
            continue
        keys = {_key(v) for v in drawn[a.name]}
        bad = [v for v in a.values if _key(v) not in keys]
        if bad:
            problems.append(f"{a.name}: cannot draw {bad}")
    if problems:
        raise RenderError(f"vertical {vertical.name!r}: " + "; ".join(problems))


def sample_labels(vertical: Vertical, rng: random.Random) -> dict[str, str]:
    """A value for every attribute of ``vertical`` (inferable or not), uniform over the allowed values.

    Combinations the renderer could not show (sleeve embroidery on a sleeveless kurta, a border the colour of the
    body) are resampled.
    """
    spec = _REGISTRY.get(vertical.name)
    for _ in range(100):
        labels = {name: rng.choice(a.values) for name, a in vertical.attributes.items()}
        if spec is None or all(ok(_canonical(vertical, spec, labels)) for ok in spec.constraints):
            return labels
    return labels


def _canonical(vertical: Vertical, spec: _Spec, labels: dict[str, str]) -> dict[str, str]:
    """Drawn attribute -> canonical drawable value; defaults for attributes that are absent or not inferable."""
    out = {}
    for name, values in spec.attributes.items():
        attr = vertical.attributes.get(name)
        if attr is None or not attr.inferable:
            out[name] = values[0]
            continue
        if name not in labels:
            raise RenderError(f"{vertical.name}: labels lack the visible attribute {name!r}")
        k = _key(str(labels[name]))
        match = [v for v in values if _key(v) == k]
        if not match:
            raise RenderError(f"{vertical.name}.{name}: cannot draw value {labels[name]!r}")
        out[name] = match[0]
    return out


# ----------------------------------------------------------------------------------------------------------------
# Garments (kurta, t-shirt, top, shirt, ethnic-set top).

_SLEEVE_LEN = {"Sleeveless": 0.0, "Short Sleeve": 0.12, "Roll-Up Sleeve": 0.2, "Three-Quarter Sleeve": 0.27,
               "Full Sleeve": 0.38, "Long Sleeve": 0.38}
_SLEEVE_DIR = (math.sin(math.radians(38)), math.cos(math.radians(38)))


def _torso(p: Painter, colour: RGB, pattern: str, *, sleeve: str, hem: float, neck: str, body: float = 0.165,
           flare: float = 0.03, waist: float = 0.0, shirttail: bool = False, accent: RGB | None = None,
           slits: bool = False) -> dict:
    """A flat-lay garment: sleeves, body and neckline. Returns masks and anchors for details."""
    cx, top, nw = 0.5, 0.12, 0.055
    sleeveless = sleeve == "Sleeveless"
    sw = 0.15 if sleeveless else 0.19
    arm_y = 0.33
    acc = accent or p.accent(colour)
    p.set_pattern_box((cx - 0.2, top, cx + 0.2, hem))
    sleeve_masks, sleeve_ends = [], []
    L = _SLEEVE_LEN[sleeve]
    if L > 0:
        for side in (-1, 1):
            s = (cx + side * sw, top + 0.04)
            a = (cx + side * (body + 0.005), arm_y)
            dx, dy = side * _SLEEVE_DIR[0] * L, _SLEEVE_DIR[1] * L
            taper = 0.25 if L > 0.3 else 0.1
            se = (s[0] + dx, s[1] + dy)
            ae = (a[0] + dx, a[1] + dy)
            ae = (ae[0] + (se[0] - ae[0]) * taper, ae[1] + (se[1] - ae[1]) * taper)
            poly = [s, se, ae, a]
            sleeve_masks.append(p.part([("poly", poly)], colour, pattern, accent=acc))
            sleeve_ends.append((se, ae, (-dx / L, -dy / L)))
    mid = (arm_y + hem) / 2
    hw = body + flare
    left = [(cx - nw, top), (cx - sw, top + 0.04), (cx - body, arm_y), (cx - body + waist, mid)]
    if shirttail:
        bottom = [(cx - hw, hem - 0.035), (cx - hw * 0.5, hem), (cx + hw * 0.5, hem), (cx + hw, hem - 0.035)]
    else:
        bottom = [(cx - hw, hem), (cx + hw, hem)]
    right = [(cx + body - waist, mid), (cx + body, arm_y), (cx + sw, top + 0.04), (cx + nw, top)]
    body_poly = left + bottom + right
    cut: list[Shape] = []
    edge = _edge_colour(colour)
    if neck in ("Round Neck", "Henley", "Mandarin Collar", "Polo Collar", "Spread Collar", "Button-Down Collar",
                "Club Collar"):
        cut.append(("ellipse", (cx - nw, top - 0.05, cx + nw, top + 0.05)))
    elif neck == "V-Neck":
        cut.append(("poly", [(cx - nw, top - 0.01), (cx + nw, top - 0.01), (cx, top + 0.14)]))
    elif neck == "Square Neck":
        cut.append(("rrect", (cx - nw - 0.015, top - 0.01, cx + nw + 0.015, top + 0.09), 0.01))
    elif neck == "Boat Neck":
        cut.append(("ellipse", (cx - 0.125, top - 0.03, cx + 0.125, top + 0.035)))
    else:  # pragma: no cover
        raise RenderError(f"unknown neck {neck!r}")
    body_mask = p.part([("poly", body_poly)], colour, pattern, cut=cut, accent=acc)
    if slits:
        for side in (-1, 1):
            p.line([(cx + side * (hw - 0.004), hem), (cx + side * (hw - 0.01), hem - 0.09)], edge, 0.006)
    # neck trims and collars
    if neck in ("Round Neck", "Henley"):  # ribbed trim along the lower half of the opening
        p.d.arc(p.box((cx - nw, top - 0.05, cx + nw, top + 0.05)), 0, 180, fill=edge + (255,), width=p.w(0.012))
    if neck == "Henley":
        p.line([(cx, top + 0.05), (cx, top + 0.15)], edge, 0.006)
        for k in range(3):
            p.circle((cx + 0.012, top + 0.07 + k * 0.03), 0.008, _contrast(colour))
    if neck == "Mandarin Collar":
        p.part([("rrect", (cx - nw - 0.005, top - 0.035, cx + nw + 0.005, top + 0.005), 0.012)], colour, "solid")
        p.line([(cx, top + 0.05), (cx, top + 0.13)], edge, 0.006)
    if neck in ("Polo Collar", "Spread Collar", "Button-Down Collar", "Club Collar"):
        spread = {"Polo Collar": 0.055, "Spread Collar": 0.085, "Button-Down Collar": 0.035, "Club Collar": 0.05}[neck]
        for side in (-1, 1):
            tip = (cx + side * spread, top + 0.1)
            flap = [(cx + side * (nw + 0.01), top - 0.02), (cx + side * 0.004, top + 0.045), tip,
                    (cx + side * (nw + 0.035), top + 0.03)]
            shapes: list[Shape] = [("poly", flap)]
            if neck == "Club Collar":
                shapes.append(("ellipse", (tip[0] - 0.022, tip[1] - 0.028, tip[0] + 0.022, tip[1] + 0.012)))
            p.part(shapes, _shade(colour, 0.93) if _lum(colour) > 40 else _shade(colour, 1.2), "solid")
            if neck == "Button-Down Collar":
                p.circle((tip[0] - side * 0.006, tip[1] - 0.012), 0.008, _contrast(colour))
        if neck == "Polo Collar":
            p.rect((cx - 0.017, top + 0.045, cx + 0.017, top + 0.16), None, edge, 0.005)
            for k in range(2):
                p.circle((cx, top + 0.075 + k * 0.045), 0.008, _contrast(colour))
    return {"body": body_mask, "body_poly": body_poly, "sleeves": sleeve_masks, "sleeve_ends": sleeve_ends,
            "hem": hem, "top": top, "neck_w": nw, "sw": sw, "arm_y": arm_y, "accent": acc}


@_register("kurta", {
    "color": _COLOUR_VALUES,
    "length": ("Knee Length", "Hip Length", "Calf Length"),
    "sleeve_length": ("Three-Quarter Sleeve", "Sleeveless", "Short Sleeve", "Full Sleeve"),
    "neck_type": ("Round Neck", "V-Neck", "Mandarin Collar", "Square Neck"),
    "detail_placement": ("Yoke", "Hem", "Sleeves", "All Over", "Placket"),
}, constraints=[lambda v: not (v["detail_placement"] == "Sleeves" and v["sleeve_length"] == "Sleeveless")])
def _draw_kurta(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    hem = {"Hip Length": 0.52, "Knee Length": 0.72, "Calf Length": 0.9}[v["length"]]
    flare = {"Hip Length": 0.02, "Knee Length": 0.04, "Calf Length": 0.07}[v["length"]]
    emb = _accent(p.rng, colour) if p.rng.random() < 0.5 else COLOURS["Gold"]
    if _dist(emb, colour) < 120:
        emb = _contrast(colour)
    t = _torso(p, colour, "solid", sleeve=v["sleeve_length"], hem=hem, neck=v["neck_type"], flare=flare, slits=True)
    place = v["detail_placement"]
    cx = 0.5
    if place == "Yoke":
        band = p.mask([("poly", [(cx - 0.2, t["top"] - 0.05), (cx + 0.2, t["top"] - 0.05), (cx + 0.16, 0.27),
                                 (cx - 0.16, 0.27)])], within=t["body"])
        p.fill(band, colour, "_embroidery", accent=emb, outline=False, own_box=True)
    elif place == "Hem":
        band = p.mask([("rrect", (0.0, hem - 0.07, 1.0, hem + 0.01), 0)], within=t["body"])
        p.fill(band, colour, "_embroidery", accent=emb, outline=False, own_box=True)
    elif place == "Placket":
        band = p.mask([("rrect", (cx - 0.035, 0.0, cx + 0.035, 0.4), 0)], within=t["body"])
        p.fill(band, colour, "_embroidery", accent=emb, outline=False, own_box=True)
    elif place == "All Over":
        p.fill(t["body"], colour, "_buti", accent=emb, outline=False)
        for m in t["sleeves"]:
            p.fill(m, colour, "_buti", accent=emb, outline=False)
    elif place == "Sleeves":
        for (se, ae, back), m in zip(t["sleeve_ends"], t["sleeves"]):
            k = 0.06
            band = p.mask([("poly", [se, ae, (ae[0] + back[0] * k, ae[1] + back[1] * k),
                                     (se[0] + back[0] * k, se[1] + back[1] * k)])], within=m)
            p.fill(band, colour, "_embroidery", accent=emb, outline=False, own_box=True)


@_register("t_shirt", {
    "color": _COLOUR_VALUES,
    "sleeve_length": ("Short Sleeve", "Long Sleeve", "Sleeveless"),
    "neck_type": ("Round Neck", "V-Neck", "Polo Collar", "Henley"),
    "pattern": PATTERNS,
})
def _draw_t_shirt(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    _torso(p, colour, v["pattern"], sleeve=v["sleeve_length"], hem=0.6, neck=v["neck_type"], body=0.19, flare=0.0)


@_register("top", {
    "color": _COLOUR_VALUES,
    "sleeve_length": ("Short Sleeve", "Sleeveless", "Three-Quarter Sleeve", "Full Sleeve"),
    "neck_type": ("Round Neck", "V-Neck", "Square Neck", "Boat Neck"),
    "pattern": PATTERNS,
})
def _draw_top(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    _torso(p, colour, v["pattern"], sleeve=v["sleeve_length"], hem=0.56, neck=v["neck_type"], body=0.16,
           flare=0.05, waist=0.025)


@_register("shirt", {
    "color": _COLOUR_VALUES,
    "sleeve_length": ("Full Sleeve", "Short Sleeve", "Roll-Up Sleeve"),
    "collar": ("Spread Collar", "Button-Down Collar", "Mandarin Collar", "Club Collar"),
    "pattern": PATTERNS,
    "pockets": ("No Pocket", "Single Pocket", "Double Pocket"),
})
def _draw_shirt(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    t = _torso(p, colour, v["pattern"], sleeve=v["sleeve_length"], hem=0.68, neck=v["collar"], body=0.175,
               flare=0.0, shirttail=True)
    edge, btn = _edge_colour(colour), _contrast(colour)
    cx = 0.5
    p.line([(cx - 0.018, 0.17), (cx - 0.018, 0.66)], edge, 0.004)
    p.line([(cx + 0.018, 0.17), (cx + 0.018, 0.66)], edge, 0.004)
    y = 0.2
    while y < 0.64:
        p.circle((cx, y), 0.008, btn)
        y += 0.075
    n = {"No Pocket": 0, "Single Pocket": 1, "Double Pocket": 2}[v["pockets"]]
    for side in ((-1,) if n == 1 else (-1, 1) if n == 2 else ()):
        x0 = cx + side * 0.045 if side > 0 else cx - 0.125
        x1 = x0 + 0.08
        p.part([("poly", [(x0, 0.25), (x1, 0.25), (x1, 0.35), ((x0 + x1) / 2, 0.365), (x0, 0.35)])], colour,
               v["pattern"], accent=t["accent"], outline=edge)
        p.line([(x0, 0.265), (x1, 0.265)], edge, 0.004)
    if v["sleeve_length"] == "Roll-Up Sleeve":
        for (se, ae, back), m in zip(t["sleeve_ends"], t["sleeves"]):
            k = 0.045
            band = p.mask([("poly", [se, ae, (ae[0] + back[0] * k, ae[1] + back[1] * k),
                                     (se[0] + back[0] * k, se[1] + back[1] * k)])], within=m)
            p.fill(band, _shade(colour, 0.8) if _lum(colour) > 50 else _shade(colour, 1.3), "solid")
    elif v["sleeve_length"] == "Full Sleeve":
        for (se, ae, back), m in zip(t["sleeve_ends"], t["sleeves"]):
            k = 0.03
            band = p.mask([("poly", [se, ae, (ae[0] + back[0] * k, ae[1] + back[1] * k),
                                     (se[0] + back[0] * k, se[1] + back[1] * k)])], within=m)
            p.fill(band, colour, "solid")


# ----------------------------------------------------------------------------------------------------------------
# Legwear (trouser, ethnic-set bottom).

_LEGS = {  # outer mid x offset from centre, hem half width, hem separation from centre, crotch y
    "Slim Fit": (0.135, 0.045, 0.075, 0.34),
    "Regular Fit": (0.165, 0.065, 0.09, 0.34),
    "Wide Leg": (0.19, 0.12, 0.135, 0.33),
    "Tapered": (0.185, 0.035, 0.07, 0.34),
    "Palazzo": (0.2, 0.13, 0.14, 0.33),
    "Churidar": (0.13, 0.035, 0.07, 0.34),
    "Salwar": (0.26, 0.035, 0.09, 0.5),
}


def _legwear(p: Painter, colour: RGB, pattern: str, style: str, hem: float, *, accent: RGB | None = None) -> None:
    cx, wy, wb = 0.5, 0.1, 0.035
    acc = accent or p.accent(colour)
    edge = _edge_colour(colour)
    half = 0.17
    p.set_pattern_box((cx - half, wy, cx + half, hem))
    if style == "Skirt":
        p.part([("poly", [(cx - half, wy + wb), (cx + half, wy + wb), (cx + 0.31, hem), (cx - 0.31, hem)])], colour,
               pattern, accent=acc)
        for k in (-2, -1, 1, 2):
            p.line([(cx + k * 0.05, wy + wb + 0.08), (cx + k * 0.1, hem - 0.02)], edge, 0.004)
    elif style == "Sharara":
        knee = wy + (hem - wy) * 0.5
        for side in (-1, 1):
            leg = [(cx + side * half, wy + wb), (cx, wy + wb), (cx, 0.34), (cx + side * 0.05, knee),
                   (cx + side * 0.01, hem), (cx + side * 0.3, hem), (cx + side * 0.16, knee)]
            p.part([("poly", leg)], colour, pattern, accent=acc)
            p.line([(cx + side * 0.05, knee), (cx + side * 0.16, knee)], edge, 0.008)
    else:
        om, hw, sep, crotch = _LEGS[style]
        mid = (crotch + hem) / 2
        for side in (-1, 1):
            hc = cx + side * sep
            inner_mid = cx + side * max(0.02, (sep - hw) * 0.6 + 0.01)
            leg = [(cx + side * half, wy + wb), (cx, wy + wb), (cx, crotch), (inner_mid, mid), (hc - side * hw, hem),
                   (hc + side * hw, hem), (cx + side * om, mid)]
            p.part([("poly", leg)], colour, pattern, accent=acc)
            if style == "Churidar":  # ruched gathers above the ankle
                for k in range(5):
                    y = hem - 0.02 - k * 0.03
                    p.line([(hc - hw * 1.1, y), (hc, y + 0.012), (hc + hw * 1.1, y)], edge, 0.004)
            if style == "Salwar":  # ankle cuff
                p.part([("rrect", (hc - hw - 0.005, hem - 0.03, hc + hw + 0.005, hem), 0.005)], colour, "solid")
    # waistband
    p.part([("rrect", (cx - half, wy, cx + half, wy + wb + 0.005), 0.008)], _shade(colour, 0.9) if _lum(colour) > 40
           else _shade(colour, 1.25), "solid")


@_register("trouser", {
    "color": _COLOUR_VALUES,
    "fit": ("Regular Fit", "Slim Fit", "Wide Leg", "Tapered"),
    "length": ("Full Length", "Ankle Length", "Three-Quarter"),
    "pattern": PATTERNS,
})
def _draw_trouser(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    hem = {"Full Length": 0.94, "Ankle Length": 0.8, "Three-Quarter": 0.64}[v["length"]]
    _legwear(p, colour, v["pattern"], v["fit"], hem)
    edge = _edge_colour(colour)
    cx = 0.5
    p.line([(cx, 0.15), (cx, 0.26)], edge, 0.005)  # fly
    for side in (-1, 1):
        p.line([(cx + side * 0.16, 0.15), (cx + side * 0.11, 0.22)], edge, 0.005)  # pocket openings
        for x in (cx + side * 0.06, cx + side * 0.14):  # belt loops
            p.line([(x, 0.095), (x, 0.15)], edge, 0.008)
    p.rect((cx - 0.012, 0.11, cx + 0.012, 0.13), (200, 200, 200), edge, 0.003, radius=0.004)  # button


# ----------------------------------------------------------------------------------------------------------------
# Ethnic set: top (kurta) on the left, bottom on the right, optional dupatta across the top.

@_register("ethnic_set", {
    "top_color": _COLOUR_VALUES,
    "top_pattern": PATTERNS,
    "bottom_type": ("Palazzo", "Churidar", "Salwar", "Sharara", "Skirt"),
    "bottom_color": _COLOUR_VALUES,
    "dupatta": ("Without Dupatta", "With Dupatta"),
})
def _draw_ethnic_set(p: Painter, v: dict[str, str]) -> None:
    top, bottom = p.colour(v["top_color"]), p.colour(v["bottom_color"])
    p.frame(-0.06, 0.04, 0.62)
    _torso(p, top, v["top_pattern"], sleeve="Three-Quarter Sleeve", hem=0.78, neck="Round Neck", flare=0.05,
           slits=True)
    if v["dupatta"] == "With Dupatta":
        dup = _shade(bottom, 1.15) if _lum(bottom) < 200 else _shade(bottom, 0.92)
        band = [(0.24, 0.1), (0.36, 0.06), (0.82, 0.88), (0.7, 0.93)]
        p.part([("poly", band)], dup, "solid")
        trim = _contrast(dup) if p.rng.random() < 0.5 else COLOURS["Gold"]
        p.line([(0.3, 0.08), (0.76, 0.905)], trim, 0.012)
        for k in range(7):  # fringe
            x, y = 0.7 + k * 0.02, 0.93 - k * 0.008
            p.line([(x, y), (x - 0.005, y + 0.05)], dup, 0.006)
    p.frame(0.44, 0.06, 0.6)
    _legwear(p, bottom, "solid", v["bottom_type"], 0.94)
    p.frame(0.0, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# Sari: a draped mannequin with pleats, a pallu over the shoulder and a border along hem and pallu edges.

def _strip(a: Pt, b: Pt, inward: Pt, width: float) -> list[Pt]:
    return [a, b, (b[0] + inward[0] * width, b[1] + inward[1] * width),
            (a[0] + inward[0] * width, a[1] + inward[1] * width)]


def _unit_normal(a: Pt, b: Pt, towards: Pt) -> Pt:
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / n, dx / n
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    if (towards[0] - mx) * nx + (towards[1] - my) * ny < 0:
        nx, ny = -nx, -ny
    return nx, ny


@_register("sari", {
    "color": _COLOUR_VALUES,
    "pattern": PATTERNS,
    "border_color": _COLOUR_VALUES,
    "border_width": ("Medium", "Thin", "Broad"),
}, constraints=[lambda v: _dist(COLOURS[v["color"]], COLOURS[v["border_color"]]) > 90])
def _draw_sari(p: Painter, v: dict[str, str]) -> None:
    body, border = p.colour(v["color"]), p.colour(v["border_color"])
    bw = {"Thin": 0.018, "Medium": 0.04, "Broad": 0.075}[v["border_width"]]
    acc = _accent(p.rng, body, avoid=[border])
    p.set_pattern_box((0.3, 0.1, 0.85, 0.95))
    skin = (200, 160, 130)
    p.part([("rrect", (0.465, 0.02, 0.535, 0.1), 0.02)], skin, "solid")  # mannequin neck
    p.part([("poly", [(0.39, 0.1), (0.61, 0.1), (0.64, 0.17), (0.6, 0.4), (0.4, 0.4), (0.36, 0.17)])],
           _shade(border, 0.9), "solid")  # blouse
    for side in (-1, 1):  # arms
        p.part([("poly", [(0.5 + side * 0.12, 0.13), (0.5 + side * 0.15, 0.17), (0.5 + side * 0.16, 0.45),
                          (0.5 + side * 0.125, 0.45)])], skin, "solid")
    skirt = [(0.39, 0.4), (0.61, 0.4), (0.7, 0.95), (0.3, 0.95)]
    sk = p.part([("poly", skirt)], body, v["pattern"], accent=acc)
    edge = _edge_colour(body)
    for k in range(-3, 4):  # pleats
        p.line([(0.5 + k * 0.012, 0.5), (0.5 + k * 0.028, 0.94)], edge, 0.004)
    hem_band = p.mask([("rrect", (0.0, 0.95 - bw, 1.0, 0.95), 0)], within=sk)
    p.fill(hem_band, border, "_embroidery", accent=_shade(border, 0.7) if _lum(border) > 80 else
           _shade(border, 1.6), outline=False, own_box=True)
    # pallu across the torso from left hip to right shoulder, then hanging down the right; borders on its edges
    across = [(0.33, 0.47), (0.43, 0.61), (0.67, 0.18), (0.56, 0.09)]
    hang = [(0.56, 0.09), (0.68, 0.12), (0.85, 0.66), (0.67, 0.71)]
    pb = bw * 0.65
    for poly, edges in ((across, [(across[1], across[2])]), (hang, [(hang[0], hang[3]), (hang[1], hang[2])])):
        m = p.part([("poly", poly)], body, v["pattern"], accent=acc)
        c = (sum(x for x, _ in poly) / 4, sum(y for _, y in poly) / 4)
        for a, b in edges:
            band = p.mask([("poly", _strip(a, b, _unit_normal(a, b, c), pb))], within=m)
            p.fill(band, border, "solid", outline=False)
    # pallu end: a broad decorated band and a fringe
    a, b = hang[3], hang[2]
    end = [a, b, (b[0] + 0.012, b[1] + 0.05), (a[0] + 0.012, a[1] + 0.05)]
    p.part([("poly", end)], border, "_embroidery", accent=acc, own_box=True)
    for k in range(9):
        t = (k + 0.5) / 9
        x, y = a[0] + 0.012 + (b[0] - a[0]) * t, a[1] + 0.05 + (b[1] - a[1]) * t
        p.line([(x, y), (x + 0.004, y + 0.035)], border, 0.005)


# ----------------------------------------------------------------------------------------------------------------
# Suitcase: front view, body with pattern, telescopic handle, lock glyph, countable wheels.

@_register("suitcase", {
    "pattern": PATTERNS,
    "color": _COLOUR_VALUES,
    "type": ("Hard Body", "Soft Body"),
    "locking_mechanism": ("Number Lock", "Key Lock", "TSA Lock"),
    "number_of_wheels": ("4", "2", "8"),
})
def _draw_suitcase(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    hard = v["type"] == "Hard Body"
    dark, metal = (40, 40, 44), (170, 172, 178)
    x0, y0, x1, y1 = 0.27, 0.2, 0.73, 0.86
    # telescopic handle and carry handle
    for x in (0.41, 0.59):
        p.rect((x - 0.012, 0.06, x + 0.012, y0 + 0.02), metal, dark, 0.003)
    p.rect((0.37, 0.035, 0.63, 0.075), dark, radius=0.015)
    # wheels: every drawn wheel is one visible circle under the base
    n = int(v["number_of_wheels"])
    if n == 2:
        groups, r = [[0.315], [0.685]], 0.042
    elif n == 4:
        groups, r = [[0.3, 0.36], [0.64, 0.7]], 0.027
    else:
        groups, r = [[0.285, 0.325, 0.375, 0.415], [0.585, 0.625, 0.675, 0.715]], 0.018
    for g in groups:
        p.rect((g[0] - r - 0.01, y1 - 0.02, g[-1] + r + 0.01, y1 + 0.025), dark, radius=0.008)  # housing
        for x in g:
            p.circle((x, y1 + 0.03 + r * 0.6), r, (25, 25, 25), (90, 90, 90), 0.004)
            p.circle((x, y1 + 0.03 + r * 0.6), r * 0.35, (120, 120, 124))
    radius = 0.06 if hard else 0.03
    acc = p.accent(colour)
    p.set_pattern_box((x0, y0, x1, y1))
    body = p.part([("rrect", (x0, y0, x1, y1), radius)], colour, v["pattern"], accent=acc)
    edge = _edge_colour(colour)
    if hard:
        light = _shade(colour, 1.35) if _lum(colour) < 200 else _shade(colour, 0.85)
        for x in (0.35, 0.43, 0.57, 0.65):  # moulded ribs
            p.line([(x, y0 + 0.06), (x, y1 - 0.06)], edge, 0.008)
            p.line([(x + 0.01, y0 + 0.06), (x + 0.01, y1 - 0.06)], light, 0.006)
        for cx_, cy_ in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):  # corner guards
            p.circle((cx_ + (0.03 if cx_ == x0 else -0.03), cy_ + (0.03 if cy_ == y0 else -0.03)), 0.022, dark)
        hl = p.mask([("poly", [(x0 + 0.03, y0 + 0.25), (x0 + 0.1, y0 + 0.12), (x0 + 0.13, y0 + 0.12),
                               (x0 + 0.06, y0 + 0.25)])], within=body)
        p.img.paste((255, 255, 255, 255), (0, 0), hl.point(lambda a: a * 90 // 255))
    else:
        inset = 0.02
        for a, b in (((x0 + inset, y0 + inset), (x1 - inset, y0 + inset)),
                     ((x1 - inset, y0 + inset), (x1 - inset, y1 - inset)),
                     ((x1 - inset, y1 - inset), (x0 + inset, y1 - inset)),
                     ((x0 + inset, y1 - inset), (x0 + inset, y0 + inset))):
            p.dashed(a, b, _contrast(colour), 0.004, 0.018)  # stitching
        px0, py0, px1, py1 = 0.32, 0.42, 0.68, 0.8
        p.part([("rrect", (px0, py0, px1, py1), 0.02)], colour, v["pattern"], accent=acc, outline=dark)
        p.line([(px0 + 0.02, py0 + 0.03), (px1 - 0.02, py0 + 0.03)], dark, 0.01)  # zip
        x = px0 + 0.025
        while x < px1 - 0.02:
            p.line([(x, py0 + 0.02), (x, py0 + 0.04)], metal, 0.003)
            x += 0.012
        p.rect((px1 - 0.08, py0 + 0.035, px1 - 0.06, py0 + 0.08), metal, dark, 0.003, radius=0.004)  # puller
        p.rect((0.45, y0 - 0.015, 0.55, y0 + 0.01), dark, radius=0.008)  # carry handle
    # the lock, on a dark plate at the top centre
    lx, ly = 0.5, y0 + 0.1
    lock = v["locking_mechanism"]
    if lock == "Key Lock":
        p.rect((lx - 0.045, ly - 0.04, lx + 0.045, ly + 0.04), dark, radius=0.01)
        p.circle((lx, ly), 0.03, metal, (230, 230, 230), 0.004)
        p.circle((lx, ly - 0.008), 0.009, (15, 15, 15))
        p.polygon([(lx - 0.006, ly - 0.005), (lx + 0.006, ly - 0.005), (lx + 0.01, ly + 0.018),
                   (lx - 0.01, ly + 0.018)], (15, 15, 15))
    else:
        tsa = lock == "TSA Lock"
        wx0 = lx - 0.06 + (0.025 if tsa else 0)
        p.rect((wx0 - 0.012, ly - 0.035, wx0 + 0.108, ly + 0.035), dark, radius=0.01)
        for k in range(3):  # three number wheels
            x = wx0 + k * 0.034
            p.rect((x, ly - 0.025, x + 0.026, ly + 0.025), (225, 225, 225), radius=0.004)
            p.line([(x + 0.004, ly), (x + 0.022, ly)], (60, 60, 60), 0.004)
        if tsa:  # the red diamond
            dx = wx0 - 0.04
            p.polygon([(dx, ly - 0.03), (dx + 0.026, ly), (dx, ly + 0.03), (dx - 0.026, ly)], (210, 20, 30),
                      (250, 250, 250), 0.004)


# ----------------------------------------------------------------------------------------------------------------
# Watch: strap top and bottom, case, dial shape, analog hands / digital LCD.

_SEGMENTS = {  # seven-segment digits: a b c d e f g
    0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg", 5: "acdfg", 6: "acdefg", 7: "abc", 8: "abcdefg",
    9: "abcdfg",
}


def _digit(p: Painter, x: float, y: float, w: float, h: float, digit: int, colour: RGB) -> None:
    t = 0.006
    segs = {"a": [(x, y), (x + w, y)], "b": [(x + w, y), (x + w, y + h / 2)], "c": [(x + w, y + h / 2), (x + w, y + h)],
            "d": [(x, y + h), (x + w, y + h)], "e": [(x, y + h / 2), (x, y + h)], "f": [(x, y), (x, y + h / 2)],
            "g": [(x, y + h / 2), (x + w, y + h / 2)]}
    for s in _SEGMENTS[digit]:
        p.line(segs[s], colour, t)


def _lcd(p: Painter, box: Sequence[float], rng: random.Random) -> None:
    x0, y0, x1, y1 = box
    bg = (150, 165, 140) if rng.random() < 0.5 else (30, 34, 38)
    fg = (20, 24, 20) if bg[0] > 100 else (120, 230, 255)
    p.rect(box, bg, (70, 70, 70), 0.004, radius=0.006)
    hh, mm = rng.randrange(1, 13), rng.randrange(60)
    digits = [hh // 10, hh % 10, mm // 10, mm % 10]
    w = (x1 - x0) / 6.2
    h = (y1 - y0) * 0.6
    y = y0 + (y1 - y0) * 0.2
    x = x0 + w * 0.5
    for i, dgt in enumerate(digits):
        _digit(p, x, y, w * 0.7, h, dgt, fg)
        x += w * (1.4 if i == 1 else 1.2)
        if i == 1:
            p.circle((x - w * 0.3, y + h * 0.3), 0.004, fg)
            p.circle((x - w * 0.3, y + h * 0.7), 0.004, fg)


def _ticks(p: Painter, cx: float, cy: float, r: float, colour: RGB) -> None:
    for k in range(12):
        a = 2 * math.pi * k / 12
        r0 = r * (0.72 if k % 3 == 0 else 0.82)
        p.line([(cx + r0 * math.sin(a), cy - r0 * math.cos(a)),
                (cx + r * 0.92 * math.sin(a), cy - r * 0.92 * math.cos(a))], colour, 0.01 if k % 3 == 0 else 0.005)


def _hands(p: Painter, cx: float, cy: float, r: float, colour: RGB, rng: random.Random) -> None:
    h, m = rng.uniform(0, 12), rng.uniform(0, 60)
    for ang, ln, wd in ((h / 12 * 2 * math.pi, 0.5, 0.014), (m / 60 * 2 * math.pi, 0.78, 0.009)):
        p.line([(cx, cy), (cx + r * ln * math.sin(ang), cy - r * ln * math.cos(ang))], colour, wd)
    s = rng.uniform(0, 2 * math.pi)
    p.line([(cx, cy), (cx + r * 0.85 * math.sin(s), cy - r * 0.85 * math.cos(s))], (200, 30, 30), 0.003)
    p.circle((cx, cy), 0.012, colour)


@_register("watch", {
    "dial_shape": ("Round", "Square", "Rectangle", "Oval"),
    "dial_color": _COLOUR_VALUES,
    "display_type": ("Analog", "Digital", "Analog-Digital"),
    "strap_type": ("Leather", "Metal", "Silicone", "Mesh"),
    "strap_color": _COLOUR_VALUES,
}, mirror=False)
def _draw_watch(p: Painter, v: dict[str, str]) -> None:
    dial, strap = p.colour(v["dial_color"]), p.colour(v["strap_color"])
    case = p.rng.choice([COLOURS["Silver"], COLOURS["Gold"], (50, 50, 54), (183, 110, 100)])
    if _dist(case, dial) < 60:
        case = (90, 90, 96) if _lum(dial) > 120 else COLOURS["Silver"]
    cx, cy = 0.5, 0.5
    shape = v["dial_shape"]
    hw, hh = {"Round": (0.18, 0.18), "Square": (0.17, 0.17), "Rectangle": (0.13, 0.2), "Oval": (0.14, 0.2)}[shape]
    sw = 0.085
    stype = v["strap_type"]
    radius = 0.05 if stype == "Silicone" else 0.01
    edge = _edge_colour(strap)
    for top in (True, False):
        yb = (0.02, cy - hh + 0.02) if top else (cy + hh - 0.02, 0.98)
        m = p.part([("rrect", (cx - sw, yb[0], cx + sw, yb[1]), radius)], strap, "_mesh" if stype == "Mesh" else
                   "solid")
        if stype == "Leather":
            stitch = _shade(strap, 1.5) if _lum(strap) < 150 else _shade(strap, 0.6)
            for x in (cx - sw + 0.014, cx + sw - 0.014):
                p.dashed((x, yb[0] + 0.015), (x, yb[1] - 0.01), stitch, 0.004, 0.014)
            if not top:
                for k in range(4):
                    p.circle((cx, 0.8 + k * 0.04), 0.008, (20, 20, 20))
        elif stype == "Metal":
            y = yb[0] + 0.01
            while y < yb[1]:
                p.line([(cx - sw, y), (cx + sw, y)], edge, 0.004)
                y += 0.035
            for x in (cx - sw / 3, cx + sw / 3):
                p.line([(x, yb[0]), (x, yb[1])], edge, 0.004)
            mid = p.mask([("rrect", (cx - sw / 3 + 0.004, yb[0], cx + sw / 3 - 0.004, yb[1]), 0)], within=m)
            p.img.paste((255, 255, 255, 255), (0, 0), mid.point(lambda a: a * 50 // 255))
        elif stype == "Silicone":
            hl = _shade(strap, 1.3) if _lum(strap) < 200 else _shade(strap, 0.9)
            p.line([(cx - sw * 0.45, yb[0] + 0.04), (cx - sw * 0.45, yb[1] - 0.04)], hl, 0.012)
            if not top:
                p.rect((cx - sw - 0.006, 0.84, cx + sw + 0.006, 0.875), strap, edge, 0.004, radius=0.006)  # keeper
    # case and dial
    pad = 0.025
    if shape in ("Round", "Oval"):
        case_shape: Shape = ("ellipse", (cx - hw - pad, cy - hh - pad, cx + hw + pad, cy + hh + pad))
        dial_shape: Shape = ("ellipse", (cx - hw, cy - hh, cx + hw, cy + hh))
    else:
        case_shape = ("rrect", (cx - hw - pad, cy - hh - pad, cx + hw + pad, cy + hh + pad), 0.03)
        dial_shape = ("rrect", (cx - hw, cy - hh, cx + hw, cy + hh), 0.015)
    p.rect((cx + hw + pad - 0.01, cy - 0.025, cx + hw + pad + 0.025, cy + 0.025), case, radius=0.006)  # crown
    p.part([case_shape], case, "solid")
    p.part([dial_shape], dial, "solid")
    marks = _contrast(dial)
    disp = v["display_type"]
    if disp == "Digital":
        p.rect((cx - hw - pad - 0.012, cy - 0.09, cx - hw - pad + 0.005, cy - 0.05), case, radius=0.004)
        p.rect((cx - hw - pad - 0.012, cy + 0.05, cx - hw - pad + 0.005, cy + 0.09), case, radius=0.004)
        lw_ = min(hw, hh) * 0.85
        _lcd(p, (cx - lw_, cy - lw_ * 0.45, cx + lw_, cy + lw_ * 0.45), p.rng)
    else:
        r = min(hw, hh)
        _ticks(p, cx, cy, r, marks)
        if disp == "Analog-Digital":
            w_ = r * 0.55
            _lcd(p, (cx - w_, cy + r * 0.3, cx + w_, cy + r * 0.62), p.rng)
        _hands(p, cx, cy, r, marks, p.rng)


# ----------------------------------------------------------------------------------------------------------------
# Footwear: sandal and shoe in side view, slipper/flip-flop pair in top view.

@_register("sandal", {
    "color": _COLOUR_VALUES,
    "heel_type": ("Flat", "Block Heel", "Wedge", "Stiletto", "Platform"),
    "closure": ("Slip-On", "Buckle", "Velcro", "Lace-Up"),
    "number_of_straps": ("2", "1", "3"),
})
def _draw_sandal(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    sole = _shade(colour, 0.85) if _lum(colour) > 60 else _shade(colour, 1.3)
    outsole = (45, 40, 38) if _lum(colour) > 90 else (150, 140, 130)
    g = 0.78
    heel = v["heel_type"]
    h, t = {"Flat": (0.0, 0.03), "Block Heel": (0.24, 0.025), "Wedge": (0.2, 0.025), "Stiletto": (0.3, 0.02),
            "Platform": (0.05, 0.09)}[heel]
    hx0, bx, tx = 0.1, 0.62, 0.92

    def bed(x: float) -> float:  # top of the footbed at x
        if x >= bx:
            return g - t
        return g - t - h * (1 - (x - hx0) / (bx - hx0)) ** 1.3

    xs = [hx0 + (tx - hx0) * i / 16 for i in range(17)]
    top_line = [(x, bed(x)) for x in xs]
    # the sole: a strip under the footbed; heel shapes underneath
    under = [(x, bed(x) + t) for x in reversed(xs)]
    p.part([("poly", top_line + [(tx + 0.02, g - t * 0.4)] + under)], sole, "solid")
    if heel == "Block Heel":
        p.part([("poly", [(hx0 + 0.01, bed(hx0) + t), (hx0 + 0.13, bed(hx0 + 0.13) + t), (hx0 + 0.12, g),
                          (hx0 + 0.02, g)])], sole, "solid")
    elif heel == "Wedge":
        p.part([("poly", [(x, bed(x) + t) for x in xs if x <= bx] + [(bx, g), (hx0 + 0.01, g)])], sole, "solid")
    elif heel == "Stiletto":
        p.part([("poly", [(hx0 + 0.005, bed(hx0) + t), (hx0 + 0.07, bed(hx0 + 0.07) + t), (hx0 + 0.05, g),
                          (hx0 + 0.035, g)])], sole, "solid")
    p.line([(x, bed(x) + t) for x in xs if x >= (bx if h > 0.1 else hx0)], outsole, 0.008)  # outsole tread
    # forefoot straps: each strap is one band over the toes
    n = int(v["number_of_straps"])
    span = (0.56, 0.86)
    step = (span[1] - span[0]) / n
    for i in range(n):
        x = span[0] + step * (i + 0.5)
        wdt = min(0.075, step * 0.62)
        y = bed(x)
        rise = 0.16 - 0.07 * (x - span[0]) / (span[1] - span[0])
        p.part([("poly", [(x - wdt / 2, y), (x + wdt / 2, y), (x + wdt / 2 - 0.04, y - rise),
                          (x - wdt / 2 - 0.04, y - rise)])], colour, "solid")
    # ankle: heel counter, ankle strap and its fastening
    closure = v["closure"]
    ay = bed(hx0) - 0.17
    if closure != "Slip-On":
        p.part([("poly", [(hx0 + 0.01, bed(hx0 + 0.01)), (hx0 + 0.06, bed(hx0 + 0.06)), (hx0 + 0.06, ay + 0.02),
                          (hx0 + 0.01, ay + 0.02)])], colour, "solid")
    if closure in ("Buckle", "Velcro"):
        p.part([("rrect", (hx0 - 0.01, ay - 0.015, hx0 + 0.25, ay + 0.02), 0.01)], colour, "solid")
        if closure == "Buckle":
            p.rect((hx0 + 0.19, ay - 0.03, hx0 + 0.24, ay + 0.035), None, (225, 200, 90), 0.008, radius=0.004)
            p.line([(hx0 + 0.215, ay - 0.03), (hx0 + 0.215, ay + 0.035)], (225, 200, 90), 0.005)
        else:
            patch = _shade(colour, 0.75) if _lum(colour) > 60 else _shade(colour, 1.5)
            p.rect((hx0 + 0.15, ay - 0.03, hx0 + 0.26, ay + 0.035), patch, _edge_colour(colour), 0.004, radius=0.006)
            for k in range(5):
                x = hx0 + 0.16 + k * 0.02
                p.line([(x, ay - 0.02), (x, ay + 0.025)], _edge_colour(colour), 0.003)
    elif closure == "Lace-Up":
        for k in range(5):  # criss-cross laces wrapping the ankle
            y = bed(hx0 + 0.1) - 0.02 - k * 0.055
            for col, wd in ((_edge_colour(colour), 0.018), (colour, 0.011)):
                p.line([(hx0 + 0.0, y), (hx0 + 0.2, y - 0.05)], col, wd)
                p.line([(hx0 + 0.0, y - 0.05), (hx0 + 0.2, y)], col, wd)


@_register("shoe", {
    "color": _COLOUR_VALUES,
    "closure": ("Lace-Up", "Slip-On", "Velcro"),
    "ankle_height": ("Low Top", "Mid Top", "High Top"),
    "toe_shape": ("Round", "Pointed", "Square"),
    "sole_color": _COLOUR_VALUES,
})
def _draw_shoe(p: Painter, v: dict[str, str]) -> None:
    colour, sole = p.colour(v["color"]), p.colour(v["sole_color"])
    g = 0.8
    st = 0.055  # sole thickness
    collar = {"Low Top": g - 0.27, "Mid Top": g - 0.37, "High Top": g - 0.5}[v["ankle_height"]]
    toe = v["toe_shape"]
    tip = {"Round": 0.92, "Pointed": 0.99, "Square": 0.9}[toe]
    back = [(0.1, g - st), (0.085, g - 0.15), (0.1, collar + 0.04), (0.13, collar)]
    front = [(0.33, collar + 0.04), (0.45, g - 0.25), (0.62, g - 0.19), (0.76, g - 0.15)]
    upper = _spline(back + front, closed=False, steps=5)
    if toe == "Round":  # a domed toe box
        upper += _spline([(0.76, g - 0.15), (0.86, g - 0.14), (tip, g - 0.1), (tip + 0.005, g - st)], closed=False,
                         steps=5)
        sole_front = [(tip + 0.012, g - st), (tip + 0.01, g - st * 0.3), (tip - 0.02, g)]
    elif toe == "Pointed":  # long and low, ending in a point
        upper += [(0.86, g - 0.12), (0.94, g - 0.085), (tip, g - st - 0.004)]
        sole_front = [(tip + 0.004, g - st), (tip - 0.04, g)]
    else:  # flat top and a vertical front
        upper += [(0.86, g - 0.145), (tip, g - 0.145), (tip, g - st)]
        sole_front = [(tip + 0.008, g - st), (tip + 0.008, g)]
    p.part([("poly", upper)], colour, "solid")
    # sole with a tread line
    sole_poly = [(0.085, g - st)] + sole_front + [(0.1, g)]
    p.part([("poly", sole_poly)], sole, "solid")
    p.line([(0.1, g - st * 0.45), (tip - 0.02, g - st * 0.45)], _edge_colour(sole), 0.004)
    edge = _edge_colour(colour)
    p.line([(0.12, collar + 0.005), (0.33, collar + 0.04)], edge, 0.012)  # collar opening
    closure = v["closure"]
    a, b = (0.36, collar + 0.06), (0.63, g - 0.17)  # the instep line
    if closure == "Lace-Up":
        lace = _contrast(colour) if p.rng.random() < 0.6 else _shade(colour, 0.5)
        n = 6
        for i in range(n):
            t0 = i / (n - 1)
            x, y = a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0
            p.circle((x - 0.012, y - 0.012), 0.007, (30, 30, 30))
            p.circle((x + 0.012, y + 0.012), 0.007, (30, 30, 30))
            if i < n - 1:
                t1 = (i + 1) / (n - 1)
                x1, y1 = a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1
                p.line([(x - 0.012, y - 0.012), (x1 + 0.012, y1 + 0.012)], lace, 0.007)
                p.line([(x + 0.012, y + 0.012), (x1 - 0.012, y1 - 0.012)], lace, 0.007)
    elif closure == "Slip-On":
        gus = _shade(colour, 0.6) if _lum(colour) > 60 else _shade(colour, 1.7)
        p.polygon([(a[0] - 0.02, a[1] - 0.03), (a[0] + 0.05, a[1] - 0.01), (a[0] + 0.01, a[1] + 0.07)], gus)
        for k in range(4):
            p.line([(a[0] - 0.01 + k * 0.012, a[1] - 0.02), (a[0] + k * 0.008, a[1] + 0.04)], edge, 0.003)
        p.rect((0.085, collar - 0.03, 0.11, collar + 0.03), gus, radius=0.008)  # pull tab
    else:  # Velcro straps across the instep
        strap = _shade(colour, 0.8) if _lum(colour) > 60 else _shade(colour, 1.4)
        for i in range(3):
            t0 = 0.15 + i * 0.33
            x, y = a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0
            p.polygon([(x - 0.035, y - 0.06), (x + 0.01, y - 0.07), (x + 0.05, y + 0.06), (x + 0.005, y + 0.07)],
                      strap, edge, 0.004)
            p.rect((x - 0.03, y - 0.065, x, y - 0.03), _shade(strap, 0.7), radius=0.004)


@_register("slipper_flip_flop", {
    "color": _COLOUR_VALUES,
    "strap_type": ("Thong", "Slide", "Cross Strap", "Double Band"),
    "strap_color": _COLOUR_VALUES,
    "footbed_pattern": PATTERNS,
}, constraints=[lambda v: _dist(COLOURS[v["color"]], COLOURS[v["strap_color"]]) > 90])
def _draw_slipper(p: Painter, v: dict[str, str]) -> None:
    colour, strap = p.colour(v["color"]), p.colour(v["strap_color"])
    acc = _accent(p.rng, colour, avoid=[strap])
    rim = _edge_colour(colour)
    stype = v["strap_type"]
    for flip, x0 in ((False, -0.22), (True, 0.22)):
        p.frame(x0, 0.0, 1.0, flip=flip)
        cx = 0.5
        outline = [(cx - 0.01, 0.08), (cx + 0.1, 0.13), (cx + 0.14, 0.3), (cx + 0.11, 0.55), (cx + 0.1, 0.8),
                   (cx, 0.92), (cx - 0.1, 0.8), (cx - 0.1, 0.55), (cx - 0.12, 0.3), (cx - 0.1, 0.13)]
        pts = _spline(outline, closed=True, steps=5)
        p.set_pattern_box((cx - 0.13, 0.08, cx + 0.14, 0.92))
        p.part([("poly", pts)], colour, v["footbed_pattern"], accent=acc, outline=False)
        p.d.line(p.pts(pts + pts[:1]), fill=rim + (255,), width=p.w(0.012))
        se = _edge_colour(strap)
        if stype == "Thong":
            post = (cx - 0.03, 0.2)
            for end in ((cx - 0.12, 0.45), (cx + 0.13, 0.43)):
                p.line([post, end], strap, 0.045, joint="curve")
            p.circle(post, 0.022, _shade(strap, 0.8))
        elif stype == "Slide":
            p.part([("rrect", (cx - 0.15, 0.27, cx + 0.16, 0.47), 0.03)], strap, "solid", outline=se)
        elif stype == "Cross Strap":
            p.line([(cx - 0.14, 0.25), (cx + 0.15, 0.5)], strap, 0.06)
            p.line([(cx + 0.15, 0.25), (cx - 0.14, 0.5)], strap, 0.06)
        else:  # Double Band
            for y in (0.24, 0.4):
                p.part([("rrect", (cx - 0.15, y, cx + 0.16, y + 0.07), 0.02)], strap, "solid", outline=se)
    p.frame(0.0, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# Composition of views.

def _product_layer(spec: _Spec, values: dict[str, str], rng: random.Random, size: int) -> Image.Image:
    p = Painter(size, rng)
    p.jitter = rng.randint(4, 10)
    spec.draw(p, values)
    box = p.img.getbbox()
    if box is None:  # pragma: no cover - every draw function draws something
        raise RenderError("the product drew nothing")
    return p.img.crop(box)


def _random_bg_colour(rng: random.Random, d: float) -> RGB:
    if rng.random() > d:
        g = rng.randint(228, 252)
        return (g, g, max(0, g - rng.randint(0, 6)))
    h, s, val = rng.random(), rng.uniform(0.05, 0.55) * d, rng.uniform(0.45, 0.95)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, val))  # type: ignore[return-value]


def _background(rng: random.Random, d: float, size: int) -> Image.Image:
    c1 = _random_bg_colour(rng, d)
    if d <= 0 or rng.random() > 0.75 * d:
        return Image.new("RGB", (size, size), c1)
    c2 = _shade(c1, rng.uniform(0.6, 0.9)) if rng.random() < 0.6 else _random_bg_colour(rng, d)
    kind = rng.randrange(4)
    if kind == 0:  # gradient
        grad = Image.linear_gradient("L").resize((size, size))
        if rng.random() < 0.5:
            grad = grad.transpose(Image.Transpose.ROTATE_90)
        return Image.composite(Image.new("RGB", (size, size), c1), Image.new("RGB", (size, size), c2), grad)
    img = Image.new("RGB", (size, size), c1)
    dr = ImageDraw.Draw(img)
    if kind == 1:  # wall and floor
        y = int(size * rng.uniform(0.55, 0.8))
        dr.rectangle([0, y, size, size], fill=c2)
    elif kind == 2:  # planks
        step = int(size * rng.uniform(0.08, 0.16))
        for x in range(rng.randrange(step), size, step):
            dr.line([(x, 0), (x, size)], fill=c2, width=max(1, size // 128))
        for _ in range(int(size / 16)):
            x, y = rng.randrange(size), rng.randrange(size)
            dr.line([(x, y), (x, y + rng.randint(5, size // 6))], fill=_shade(c1, 0.93), width=1)
    else:  # tiles
        step = int(size * rng.uniform(0.1, 0.2))
        for k in range(rng.randrange(step), size, step):
            dr.line([(k, 0), (k, size)], fill=c2, width=max(1, size // 128))
            dr.line([(0, k), (size, k)], fill=c2, width=max(1, size // 128))
    return img


def _distractors(img: Image.Image, rng: random.Random, d: float) -> None:
    size = img.width
    dr = ImageDraw.Draw(img)
    if rng.random() < 0.55 * d:  # people-like silhouettes at the sides
        for _ in range(rng.randint(1, 2)):
            hgt = size * rng.uniform(0.6, 1.1)
            x = size * (rng.uniform(-0.05, 0.18) if rng.random() < 0.5 else rng.uniform(0.82, 1.05))
            y = size * rng.uniform(0.15, 0.45)
            col = rng.choice([(60, 60, 66), (120, 110, 100), (190, 150, 120), (90, 70, 60), (150, 150, 160)])
            hr = hgt * 0.07
            dr.ellipse([x - hr, y - hr, x + hr, y + hr], fill=col)
            sh = hgt * 0.2
            dr.rounded_rectangle([x - sh, y + hr * 1.2, x + sh, y + hgt], radius=int(sh * 0.5), fill=col)
            dr.line([(x - sh, y + hr * 1.8), (x - sh * 1.5, y + hgt * 0.55)], fill=col, width=max(2, int(sh * 0.35)))
            dr.line([(x + sh, y + hr * 1.8), (x + sh * 1.5, y + hgt * 0.55)], fill=col, width=max(2, int(sh * 0.35)))
    for _ in range(int(rng.random() * 5 * d)):  # clutter
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        r = size * rng.uniform(0.03, 0.09)
        col = tuple(rng.randrange(256) for _ in range(3))
        kind = rng.randrange(4)
        if kind == 0:
            dr.ellipse([x - r, y - r, x + r, y + r], fill=col)
        elif kind == 1:
            dr.rectangle([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=col)
        elif kind == 2:
            dr.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=col)
        else:
            dr.line([(x - r * 1.5, y), (x + r * 1.5, y + rng.uniform(-r, r))], fill=col, width=max(2, int(r / 3)))


def _compose_view(product: Image.Image, rng: random.Random, d: float, size: int, mirror: bool = True) -> Image.Image:
    img = _background(rng, d, size)
    _distractors(img, rng, d)
    prod = product
    if d > 0 and rng.random() < 0.5 and mirror:
        prod = prod.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    fill = 0.86 - 0.32 * d * rng.random()
    k = fill * size / max(prod.size)
    prod = prod.resize((max(1, round(prod.width * k)), max(1, round(prod.height * k))), Image.Resampling.BILINEAR)
    angle = rng.uniform(-1, 1) * 18 * d
    if abs(angle) > 0.5:
        prod = prod.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    slack_x, slack_y = (size - prod.width) / 2, (size - prod.height) / 2
    crop = 0.06 * size * d
    px = slack_x + rng.uniform(-1, 1) * (max(0.0, slack_x) * min(1.0, 2 * d) + crop)
    py = slack_y + rng.uniform(-1, 1) * (max(0.0, slack_y) * min(1.0, 2 * d) + crop)
    px, py = int(round(px)), int(round(py))
    # a soft contact shadow under the product
    sh = ImageDraw.Draw(img)
    bg = img.getpixel((min(size - 1, max(0, px + prod.width // 2)), min(size - 1, max(0, py + prod.height - 1))))
    sh.ellipse([px + prod.width * 0.1, py + prod.height - size * 0.02, px + prod.width * 0.9,
                py + prod.height + size * 0.02], fill=_shade(bg, 0.85))
    img.paste(prod, (px, py), prod)
    # lighting: brightness, contrast, a slight colour cast
    if d > 0:
        b = 1 + rng.uniform(-0.3, 0.3) * d
        c = 1 + rng.uniform(-0.35, 0.35) * d
        ramp = (np.arange(256, dtype=np.float64) - 128) * c + 128
        gains = [b * (1 + rng.uniform(-0.06, 0.06) * d) for _ in range(3)]
        lut = np.concatenate([np.clip(ramp * g, 0, 255).astype(np.uint8) for g in gains])
        img = img.point(lut.tolist())
        sigma = 7 * d
        if sigma >= 1:
            gen = np.random.default_rng(rng.getrandbits(64))
            arr = np.asarray(img, dtype=np.int16) + gen.integers(-int(sigma), int(sigma) + 1, (size, size, 3),
                                                                 dtype=np.int16)
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


def render_listing(vertical: Vertical, labels: dict[str, str], rng: random.Random, *, n_views: int,
                   difficulty: float = 0.3, size: int = 256) -> list[Image.Image]:
    """``n_views`` RGB ``size x size`` views of one product whose visible attributes are drawn per ``labels``."""
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    try:
        spec = _REGISTRY[vertical.name]
    except KeyError:
        raise RenderError(f"no renderer for vertical {vertical.name!r}; known: {sorted(_REGISTRY)}") from None
    values = _canonical(vertical, spec, labels)
    product = _product_layer(spec, values, rng, size)
    return [_compose_view(product, rng, difficulty * (0.5 if k == 0 else 1.0), size, spec.mirror)
            for k in range(n_views)]
