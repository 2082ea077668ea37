"""The pattern textures: one fill per taxonomy pattern (:data:`~attrpipe.synth.render.colours.PATTERNS`) and a few
internal ones (embroidery, buti, mesh), looked up in :data:`TEXTURES` by the pattern's key.

Each draws on a canvas-sized RGB image already filled with the base colour, covering all of it; ``box`` (pixels) is
the reference area - the product's main patterned region - that sets the pattern's scale and where placed motifs (a
graphic, colour blocks) go, so a pattern is continuous across a product's parts (body, sleeves, pockets) and looks the
same at any product size.
"""

from __future__ import annotations

import math
import random
from typing import Callable

from attrpipe.synth.render.colours import PATTERNS, colour_distance, luminance, pick_accent, shade, value_key
from attrpipe.synth.render.geometry import blob, spline, star

__all__ = ["Box", "TEXTURES"]

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
    centre = (250, 220, 60) if colour_distance(acc, (250, 220, 60)) > 80 else (255, 255, 255)
    leaf = (40, 130, 60) if colour_distance(base, (40, 130, 60)) > 80 else (240, 240, 240)
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
    acc2 = pick_accent(rng, base, avoid=[acc])
    cell = _period(box, 2.5, 3.2, rng, 10.0)
    for i, (x, y) in enumerate(_scatter(box, cell, W, H, rng)):
        col = acc if i % 2 == 0 else acc2
        if rng.random() < 0.5:
            pts = [(x + rng.uniform(-1, 1) * cell, y + rng.uniform(-1, 1) * cell) for _ in range(4)]
            d.line(spline(pts, closed=False, steps=6), fill=col, width=max(2, int(cell * rng.uniform(0.1, 0.18))))
        else:
            d.polygon(blob(rng, x, y, cell * rng.uniform(0.2, 0.35), wobble=0.5), fill=col)


def _tex_animal(d, W, H, box, base, acc, rng):
    dark = (40, 28, 20) if luminance(base) > 70 else (210, 170, 110)
    inner = shade(base, 0.75) if luminance(base) > 70 else shade(base, 1.4)
    period = _period(box, 6, 8, rng, 7.0)
    for cx, cy in _scatter(box, period, W, H, rng):
        r = period * rng.uniform(0.25, 0.34)
        d.polygon(blob(rng, cx, cy, r * 0.7, n=5, wobble=0.3), fill=inner)
        a0 = rng.uniform(0, 360)
        for k in range(3):
            d.arc([cx - r, cy - r, cx + r, cy + r], a0 + 120 * k, a0 + 120 * k + rng.uniform(60, 95), fill=dark,
                  width=max(2, int(r * 0.35)))


def _tex_camouflage(d, W, H, box, base, acc, rng):
    olive = (96, 92, 56) if colour_distance(base, (96, 92, 56)) > 60 else (40, 40, 30)
    cols = [shade(base, 0.6), shade(base, 1.35), olive]
    cell = _period(box, 4, 5, rng, 8.0)
    for i, (x, y) in enumerate(_scatter(box, cell, W, H, rng)):
        d.polygon(blob(rng, x, y, cell * rng.uniform(0.35, 0.5), n=6, wobble=0.45), fill=cols[i % 3])


def _tex_graphic(d, W, H, box, base, acc, rng):
    cx, cy = (box[0] + box[2]) / 2, box[1] + (box[3] - box[1]) * 0.42
    r = min(box[2] - box[0], box[3] - box[1]) * 0.24
    kind = rng.randrange(3)
    if kind == 0:
        d.polygon(star(cx, cy, r), fill=acc)
    elif kind == 1:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=acc)
        d.polygon(star(cx, cy, r * 0.7, points=4, inner=0.35), fill=base)
    else:
        d.polygon([(cx - r * 0.2, cy - r), (cx + r * 0.6, cy - r), (cx + r * 0.1, cy - r * 0.1),
                   (cx + r * 0.6, cy - r * 0.1), (cx - r * 0.4, cy + r), (cx - r * 0.05, cy + r * 0.05),
                   (cx - r * 0.55, cy + r * 0.05)], fill=acc)
    bh = max(2, int(r * 0.18))  # "text" bars under the motif
    for k, frac in enumerate((0.9, 0.6)):
        y = cy + r * 1.25 + k * bh * 1.8
        d.rectangle([cx - r * frac, y, cx + r * frac, y + bh], fill=acc)


def _tex_colorblock(d, W, H, box, base, acc, rng):
    acc2 = pick_accent(rng, base, avoid=[acc])
    x0, y0, x1, y1 = box
    if rng.random() < 0.5:  # horizontal blocks: the base colour keeps the top half
        d.rectangle([0, y0 + (y1 - y0) * 0.5, W, y0 + (y1 - y0) * 0.75], fill=acc)
        d.rectangle([0, y0 + (y1 - y0) * 0.75, W, H], fill=acc2)
    else:
        xm, ym = x0 + (x1 - x0) * 0.55, y0 + (y1 - y0) * 0.55
        d.rectangle([xm, 0, W, ym], fill=acc)
        d.rectangle([0, ym, xm, H], fill=acc2)


def _tex_textured(d, W, H, box, base, acc, rng):
    tone = shade(base, 0.72) if luminance(base) > 60 else shade(base, 1.6)
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
    dot = pick_accent(rng, base, avoid=[acc])
    r = period * 0.26
    for _, x, y in _lattice(box, period, W, H, 1.0):
        flip = -1 if rng.random() < 0.5 else 1
        body = [(x + r * math.cos(a), y + r * math.sin(a)) for a in (0.3 + k * (2 * math.pi - 0.6) / 9
                                                                     for k in range(10))]
        tail = [(x + flip * r * 0.2, y - r * 1.9), (x + flip * r * 0.9, y - r * 0.6)]
        d.polygon(spline(body[:5] + [tail[1], tail[0]] + body[5:], closed=True, steps=3), fill=acc)
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
    tone = shade(base, 0.6) if luminance(base) > 60 else shade(base, 1.8)
    for i in range(-H, W + H, 3):
        d.line([(i, 0), (i + H, H)], fill=tone, width=1)
        d.line([(i, 0), (i - H, H)], fill=tone, width=1)


TEXTURES: dict[str, Callable] = {
    "solid": _tex_solid, "striped": _tex_striped, "checkered": _tex_checkered, "polkadot": _tex_polka,
    "floral": _tex_floral, "geometric": _tex_geometric, "abstract": _tex_abstract, "animalprint": _tex_animal,
    "camouflage": _tex_camouflage, "graphicprint": _tex_graphic, "colorblock": _tex_colorblock,
    "textured": _tex_textured, "chevron": _tex_chevron, "paisley": _tex_paisley,
    # internal fills, not taxonomy values
    "_embroidery": _tex_embroidery, "_buti": _tex_buti, "_mesh": _tex_mesh,
}
assert all(value_key(p) in TEXTURES for p in PATTERNS)
