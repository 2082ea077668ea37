"""Apparel, flat-lay: garments as sleeves, body and neckline (kurta, t-shirt, top, shirt), legwear (trouser), the
ethnic set (a kurta top beside its bottom, an optional dupatta) and the sari (draped on a mannequin)."""

from __future__ import annotations

import math

from attrpipe.synth.render.colours import (COLOURS, PATTERNS, RGB, colour_distance, contrast_colour, edge_colour,
                                           luminance, pick_accent, shade)
from attrpipe.synth.render.geometry import Pt
from attrpipe.synth.render.painter import Painter, Shape
from attrpipe.synth.render.spec import COLOUR_VALUES, ProductSpec, RenderError, draws

__all__ = ["PRODUCTS"]

PRODUCTS: dict[str, ProductSpec] = {}


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
    edge = edge_colour(colour)
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
            p.circle((cx + 0.012, top + 0.07 + k * 0.03), 0.008, contrast_colour(colour))
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
            p.part(shapes, shade(colour, 0.93) if luminance(colour) > 40 else shade(colour, 1.2), "solid")
            if neck == "Button-Down Collar":
                p.circle((tip[0] - side * 0.006, tip[1] - 0.012), 0.008, contrast_colour(colour))
        if neck == "Polo Collar":
            p.rect((cx - 0.017, top + 0.045, cx + 0.017, top + 0.16), None, edge, 0.005)
            for k in range(2):
                p.circle((cx, top + 0.075 + k * 0.045), 0.008, contrast_colour(colour))
    return {"body": body_mask, "body_poly": body_poly, "sleeves": sleeve_masks, "sleeve_ends": sleeve_ends,
            "hem": hem, "top": top, "neck_w": nw, "sw": sw, "arm_y": arm_y, "accent": acc}


@draws(PRODUCTS, "kurta", {
    "color": COLOUR_VALUES,
    "length": ("Knee Length", "Hip Length", "Calf Length"),
    "sleeve_length": ("Three-Quarter Sleeve", "Sleeveless", "Short Sleeve", "Full Sleeve"),
    "neck_type": ("Round Neck", "V-Neck", "Mandarin Collar", "Square Neck"),
    "detail_placement": ("Yoke", "Hem", "Sleeves", "All Over", "Placket"),
}, constraints=[lambda v: not (v["detail_placement"] == "Sleeves" and v["sleeve_length"] == "Sleeveless")])
def _draw_kurta(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    hem = {"Hip Length": 0.52, "Knee Length": 0.72, "Calf Length": 0.9}[v["length"]]
    flare = {"Hip Length": 0.02, "Knee Length": 0.04, "Calf Length": 0.07}[v["length"]]
    emb = pick_accent(p.rng, colour) if p.rng.random() < 0.5 else COLOURS["Gold"]
    if colour_distance(emb, colour) < 120:
        emb = contrast_colour(colour)
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


@draws(PRODUCTS, "t_shirt", {
    "color": COLOUR_VALUES,
    "sleeve_length": ("Short Sleeve", "Long Sleeve", "Sleeveless"),
    "neck_type": ("Round Neck", "V-Neck", "Polo Collar", "Henley"),
    "pattern": PATTERNS,
})
def _draw_t_shirt(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    _torso(p, colour, v["pattern"], sleeve=v["sleeve_length"], hem=0.6, neck=v["neck_type"], body=0.19, flare=0.0)


@draws(PRODUCTS, "top", {
    "color": COLOUR_VALUES,
    "sleeve_length": ("Short Sleeve", "Sleeveless", "Three-Quarter Sleeve", "Full Sleeve"),
    "neck_type": ("Round Neck", "V-Neck", "Square Neck", "Boat Neck"),
    "pattern": PATTERNS,
})
def _draw_top(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    _torso(p, colour, v["pattern"], sleeve=v["sleeve_length"], hem=0.56, neck=v["neck_type"], body=0.16,
           flare=0.05, waist=0.025)


@draws(PRODUCTS, "shirt", {
    "color": COLOUR_VALUES,
    "sleeve_length": ("Full Sleeve", "Short Sleeve", "Roll-Up Sleeve"),
    "collar": ("Spread Collar", "Button-Down Collar", "Mandarin Collar", "Club Collar"),
    "pattern": PATTERNS,
    "pockets": ("No Pocket", "Single Pocket", "Double Pocket"),
})
def _draw_shirt(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    t = _torso(p, colour, v["pattern"], sleeve=v["sleeve_length"], hem=0.68, neck=v["collar"], body=0.175,
               flare=0.0, shirttail=True)
    edge, btn = edge_colour(colour), contrast_colour(colour)
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
            p.fill(band, shade(colour, 0.8) if luminance(colour) > 50 else shade(colour, 1.3), "solid")
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
    edge = edge_colour(colour)
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
    p.part([("rrect", (cx - half, wy, cx + half, wy + wb + 0.005), 0.008)], shade(colour, 0.9) if luminance(colour) > 40
           else shade(colour, 1.25), "solid")


@draws(PRODUCTS, "trouser", {
    "color": COLOUR_VALUES,
    "fit": ("Regular Fit", "Slim Fit", "Wide Leg", "Tapered"),
    "length": ("Full Length", "Ankle Length", "Three-Quarter"),
    "pattern": PATTERNS,
})
def _draw_trouser(p: Painter, v: dict[str, str]) -> None:
    colour = p.colour(v["color"])
    hem = {"Full Length": 0.94, "Ankle Length": 0.8, "Three-Quarter": 0.64}[v["length"]]
    _legwear(p, colour, v["pattern"], v["fit"], hem)
    edge = edge_colour(colour)
    cx = 0.5
    p.line([(cx, 0.15), (cx, 0.26)], edge, 0.005)  # fly
    for side in (-1, 1):
        p.line([(cx + side * 0.16, 0.15), (cx + side * 0.11, 0.22)], edge, 0.005)  # pocket openings
        for x in (cx + side * 0.06, cx + side * 0.14):  # belt loops
            p.line([(x, 0.095), (x, 0.15)], edge, 0.008)
    p.rect((cx - 0.012, 0.11, cx + 0.012, 0.13), (200, 200, 200), edge, 0.003, radius=0.004)  # button


# ----------------------------------------------------------------------------------------------------------------
# Ethnic set: top (kurta) on the left, bottom on the right, optional dupatta across the top.

@draws(PRODUCTS, "ethnic_set", {
    "top_color": COLOUR_VALUES,
    "top_pattern": PATTERNS,
    "bottom_type": ("Palazzo", "Churidar", "Salwar", "Sharara", "Skirt"),
    "bottom_color": COLOUR_VALUES,
    "dupatta": ("Without Dupatta", "With Dupatta"),
})
def _draw_ethnic_set(p: Painter, v: dict[str, str]) -> None:
    top, bottom = p.colour(v["top_color"]), p.colour(v["bottom_color"])
    p.frame(-0.06, 0.04, 0.62)
    _torso(p, top, v["top_pattern"], sleeve="Three-Quarter Sleeve", hem=0.78, neck="Round Neck", flare=0.05,
           slits=True)
    if v["dupatta"] == "With Dupatta":
        dup = shade(bottom, 1.15) if luminance(bottom) < 200 else shade(bottom, 0.92)
        band = [(0.24, 0.1), (0.36, 0.06), (0.82, 0.88), (0.7, 0.93)]
        p.part([("poly", band)], dup, "solid")
        trim = contrast_colour(dup) if p.rng.random() < 0.5 else COLOURS["Gold"]
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


@draws(PRODUCTS, "sari", {
    "color": COLOUR_VALUES,
    "pattern": PATTERNS,
    "border_color": COLOUR_VALUES,
    "border_width": ("Medium", "Thin", "Broad"),
}, constraints=[lambda v: colour_distance(COLOURS[v["color"]], COLOURS[v["border_color"]]) > 90])
def _draw_sari(p: Painter, v: dict[str, str]) -> None:
    body, border = p.colour(v["color"]), p.colour(v["border_color"])
    bw = {"Thin": 0.018, "Medium": 0.04, "Broad": 0.075}[v["border_width"]]
    acc = pick_accent(p.rng, body, avoid=[border])
    p.set_pattern_box((0.3, 0.1, 0.85, 0.95))
    skin = (200, 160, 130)
    p.part([("rrect", (0.465, 0.02, 0.535, 0.1), 0.02)], skin, "solid")  # mannequin neck
    p.part([("poly", [(0.39, 0.1), (0.61, 0.1), (0.64, 0.17), (0.6, 0.4), (0.4, 0.4), (0.36, 0.17)])],
           shade(border, 0.9), "solid")  # blouse
    for side in (-1, 1):  # arms
        p.part([("poly", [(0.5 + side * 0.12, 0.13), (0.5 + side * 0.15, 0.17), (0.5 + side * 0.16, 0.45),
                          (0.5 + side * 0.125, 0.45)])], skin, "solid")
    skirt = [(0.39, 0.4), (0.61, 0.4), (0.7, 0.95), (0.3, 0.95)]
    sk = p.part([("poly", skirt)], body, v["pattern"], accent=acc)
    edge = edge_colour(body)
    for k in range(-3, 4):  # pleats
        p.line([(0.5 + k * 0.012, 0.5), (0.5 + k * 0.028, 0.94)], edge, 0.004)
    hem_band = p.mask([("rrect", (0.0, 0.95 - bw, 1.0, 0.95), 0)], within=sk)
    p.fill(hem_band, border, "_embroidery", accent=shade(border, 0.7) if luminance(border) > 80 else
           shade(border, 1.6), outline=False, own_box=True)
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
