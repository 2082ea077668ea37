"""Footwear: the sandal and the shoe in side view, the slipper/flip-flop as a pair seen from above."""

from __future__ import annotations

from attrpipe.synth.render.colours import (COLOURS, PATTERNS, colour_distance, contrast_colour, edge_colour, luminance,
                                           pick_accent, shade)
from attrpipe.synth.render.geometry import spline
from attrpipe.synth.render.painter import Painter
from attrpipe.synth.render.spec import COLOUR_VALUES, ProductSpec, draws

__all__ = ["PRODUCTS"]

PRODUCTS: dict[str, ProductSpec] = {}


@draws(PRODUCTS, "sandal", {
    "color": COLOUR_VALUES,
    "heel_type": ("Flat", "Block Heel", "Wedge", "Stiletto", "Platform"),
    "closure": ("Slip-On", "Buckle", "Velcro", "Lace-Up"),
    "number_of_straps": ("2", "1", "3"),
})
def _draw_sandal(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    sole = shade(colour, 0.85) if luminance(colour) > 60 else shade(colour, 1.3)
    outsole = (45, 40, 38) if luminance(colour) > 90 else (150, 140, 130)
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
            patch = shade(colour, 0.75) if luminance(colour) > 60 else shade(colour, 1.5)
            p.rect((hx0 + 0.15, ay - 0.03, hx0 + 0.26, ay + 0.035), patch, edge_colour(colour), 0.004, radius=0.006)
            for k in range(5):
                x = hx0 + 0.16 + k * 0.02
                p.line([(x, ay - 0.02), (x, ay + 0.025)], edge_colour(colour), 0.003)
    elif closure == "Lace-Up":
        for k in range(5):  # criss-cross laces wrapping the ankle
            y = bed(hx0 + 0.1) - 0.02 - k * 0.055
            for col, wd in ((edge_colour(colour), 0.018), (colour, 0.011)):
                p.line([(hx0 + 0.0, y), (hx0 + 0.2, y - 0.05)], col, wd)
                p.line([(hx0 + 0.0, y - 0.05), (hx0 + 0.2, y)], col, wd)


@draws(PRODUCTS, "shoe", {
    "color": COLOUR_VALUES,
    "closure": ("Lace-Up", "Slip-On", "Velcro"),
    "ankle_height": ("Low Top", "Mid Top", "High Top"),
    "toe_shape": ("Round", "Pointed", "Square"),
    "sole_color": COLOUR_VALUES,
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
    upper = spline(back + front, closed=False, steps=5)
    if toe == "Round":  # a domed toe box
        upper += spline([(0.76, g - 0.15), (0.86, g - 0.14), (tip, g - 0.1), (tip + 0.005, g - st)], closed=False,
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
    p.line([(0.1, g - st * 0.45), (tip - 0.02, g - st * 0.45)], edge_colour(sole), 0.004)
    edge = edge_colour(colour)
    p.line([(0.12, collar + 0.005), (0.33, collar + 0.04)], edge, 0.012)  # collar opening
    closure = v["closure"]
    a, b = (0.36, collar + 0.06), (0.63, g - 0.17)  # the instep line
    if closure == "Lace-Up":
        lace = contrast_colour(colour) if p.rng.random() < 0.6 else shade(colour, 0.5)
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
        gus = shade(colour, 0.6) if luminance(colour) > 60 else shade(colour, 1.7)
        p.polygon([(a[0] - 0.02, a[1] - 0.03), (a[0] + 0.05, a[1] - 0.01), (a[0] + 0.01, a[1] + 0.07)], gus)
        for k in range(4):
            p.line([(a[0] - 0.01 + k * 0.012, a[1] - 0.02), (a[0] + k * 0.008, a[1] + 0.04)], edge, 0.003)
        p.rect((0.085, collar - 0.03, 0.11, collar + 0.03), gus, radius=0.008)  # pull tab
    else:  # Velcro straps across the instep
        strap = shade(colour, 0.8) if luminance(colour) > 60 else shade(colour, 1.4)
        for i in range(3):
            t0 = 0.15 + i * 0.33
            x, y = a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0
            p.polygon([(x - 0.035, y - 0.06), (x + 0.01, y - 0.07), (x + 0.05, y + 0.06), (x + 0.005, y + 0.07)],
                      strap, edge, 0.004)
            p.rect((x - 0.03, y - 0.065, x, y - 0.03), shade(strap, 0.7), radius=0.004)


@draws(PRODUCTS, "slipper_flip_flop", {
    "color": COLOUR_VALUES,
    "strap_type": ("Thong", "Slide", "Cross Strap", "Double Band"),
    "strap_color": COLOUR_VALUES,
    "footbed_pattern": PATTERNS,
}, constraints=[lambda v: colour_distance(COLOURS[v["color"]], COLOURS[v["strap_color"]]) > 90])
def _draw_slipper(p: Painter, v: dict[str, str]) -> None:
    colour, strap = p.colour(v["color"]), p.colour(v["strap_color"])
    acc = pick_accent(p.rng, colour, avoid=[strap])
    rim = edge_colour(colour)
    stype = v["strap_type"]
    for flip, x0 in ((False, -0.22), (True, 0.22)):
        p.frame(x0, 0.0, 1.0, flip=flip)
        cx = 0.5
        outline = [(cx - 0.01, 0.08), (cx + 0.1, 0.13), (cx + 0.14, 0.3), (cx + 0.11, 0.55), (cx + 0.1, 0.8),
                   (cx, 0.92), (cx - 0.1, 0.8), (cx - 0.1, 0.55), (cx - 0.12, 0.3), (cx - 0.1, 0.13)]
        pts = spline(outline, closed=True, steps=5)
        p.set_pattern_box((cx - 0.13, 0.08, cx + 0.14, 0.92))
        p.part([("poly", pts)], colour, v["footbed_pattern"], accent=acc, outline=False)
        p.d.line(p.pts(pts + pts[:1]), fill=rim + (255,), width=p.w(0.012))
        se = edge_colour(strap)
        if stype == "Thong":
            post = (cx - 0.03, 0.2)
            for end in ((cx - 0.12, 0.45), (cx + 0.13, 0.43)):
                p.line([post, end], strap, 0.045, joint="curve")
            p.circle(post, 0.022, shade(strap, 0.8))
        elif stype == "Slide":
            p.part([("rrect", (cx - 0.15, 0.27, cx + 0.16, 0.47), 0.03)], strap, "solid", outline=se)
        elif stype == "Cross Strap":
            p.line([(cx - 0.14, 0.25), (cx + 0.15, 0.5)], strap, 0.06)
            p.line([(cx + 0.15, 0.25), (cx - 0.14, 0.5)], strap, 0.06)
        else:  # Double Band
            for y in (0.24, 0.4):
                p.part([("rrect", (cx - 0.15, y, cx + 0.16, y + 0.07), 0.02)], strap, "solid", outline=se)
    p.frame(0.0, 0.0, 1.0)
