"""Bags and luggage: the suitcase, front view (shell and pattern, handles, lock, countable wheels)."""

from __future__ import annotations

from attrpipe.synth.render.colours import PATTERNS, contrast_colour, edge_colour, luminance, shade
from attrpipe.synth.render.painter import Painter
from attrpipe.synth.render.spec import COLOUR_VALUES, ProductSpec, draws

__all__ = ["PRODUCTS"]

PRODUCTS: dict[str, ProductSpec] = {}


@draws(PRODUCTS, "suitcase", {
    "pattern": PATTERNS,
    "color": COLOUR_VALUES,
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
    edge = edge_colour(colour)
    if hard:
        light = shade(colour, 1.35) if luminance(colour) < 200 else shade(colour, 0.85)
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
            p.dashed(a, b, contrast_colour(colour), 0.004, 0.018)  # stitching
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
