"""Accessories: the watch (strap above and below, case, dial shape, analog hands or a digital LCD)."""

from __future__ import annotations

import math
import random
from typing import Sequence

from attrpipe.synth.render.colours import COLOURS, RGB, colour_distance, contrast_colour, edge_colour, luminance, shade
from attrpipe.synth.render.painter import Painter, Shape
from attrpipe.synth.render.spec import COLOUR_VALUES, ProductSpec, draws

__all__ = ["PRODUCTS"]

PRODUCTS: dict[str, ProductSpec] = {}


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


@draws(PRODUCTS, "watch", {
    "dial_shape": ("Round", "Square", "Rectangle", "Oval"),
    "dial_color": COLOUR_VALUES,
    "display_type": ("Analog", "Digital", "Analog-Digital"),
    "strap_type": ("Leather", "Metal", "Silicone", "Mesh"),
    "strap_color": COLOUR_VALUES,
}, mirror=False)
def _draw_watch(p: Painter, v: dict[str, str]) -> None:
    dial, strap = p.colour(v["dial_color"]), p.colour(v["strap_color"])
    case = p.rng.choice([COLOURS["Silver"], COLOURS["Gold"], (50, 50, 54), (183, 110, 100)])
    if colour_distance(case, dial) < 60:
        case = (90, 90, 96) if luminance(dial) > 120 else COLOURS["Silver"]
    cx, cy = 0.5, 0.5
    shape = v["dial_shape"]
    hw, hh = {"Round": (0.18, 0.18), "Square": (0.17, 0.17), "Rectangle": (0.13, 0.2), "Oval": (0.14, 0.2)}[shape]
    sw = 0.085
    stype = v["strap_type"]
    radius = 0.05 if stype == "Silicone" else 0.01
    edge = edge_colour(strap)
    for top in (True, False):
        yb = (0.02, cy - hh + 0.02) if top else (cy + hh - 0.02, 0.98)
        m = p.part([("rrect", (cx - sw, yb[0], cx + sw, yb[1]), radius)], strap, "_mesh" if stype == "Mesh" else
                   "solid")
        if stype == "Leather":
            stitch = shade(strap, 1.5) if luminance(strap) < 150 else shade(strap, 0.6)
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
            hl = shade(strap, 1.3) if luminance(strap) < 200 else shade(strap, 0.9)
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
    marks = contrast_colour(dial)
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
