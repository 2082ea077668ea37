"""The painter: a product drawn in unit coordinates on a transparent layer, with masked pattern fills and outlines."""

from __future__ import annotations

import math
import random
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from attrpipe.synth.render.colours import (COLOUR_BY_KEY, METALLIC, RGB, edge_colour, jitter_colour, pick_accent,
                                           value_key)
from attrpipe.synth.render.geometry import Pt
from attrpipe.synth.render.textures import TEXTURES, Box

__all__ = ["Shape", "Painter"]

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
        k = value_key(name)
        return jitter_colour(self.rng, COLOUR_BY_KEY[k], 3 if k in METALLIC else self.jitter)

    def accent(self, colour: RGB) -> RGB:
        """The product's second colour for patterns on ``colour`` (one per base colour, so parts agree)."""
        if colour not in self._accents:
            self._accents[colour] = pick_accent(self.rng, colour)
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

    def mask(self, shapes: Iterable[Shape], cut: Iterable[Shape] = (),
             within: Image.Image | None = None) -> Image.Image:
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
            fn = TEXTURES[pattern if pattern.startswith("_") else value_key(pattern)]
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
        if value_key(pattern) == "solid":
            self.img.paste(colour + (255,), (0, 0), mask)
        elif own_box:  # a texture just for this part's bounding box
            w, h = box[2] - box[0], box[3] - box[1]
            tex = self.texture(pattern, colour, accent or self.accent(colour), (0.0, 0.0, float(w), float(h)), (w, h))
            self.img.paste(tex, box[:2], mask.crop(box))
        else:
            tex = self.texture(pattern, colour, accent or self.accent(colour), self.pattern_box, (self.S, self.S))
            self.img.paste(tex.crop(box), box[:2], mask.crop(box))
        if outline:
            col = outline if isinstance(outline, tuple) else edge_colour(colour)
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
