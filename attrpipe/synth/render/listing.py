"""A listing's views: the product drawn once (or once per view, when views show it differently), then composed
``n_views`` times on backgrounds with distractors, lighting and noise (:func:`render_listing`)."""

from __future__ import annotations

import colorsys
import random
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from attrpipe.synth.render.colours import RGB, shade
from attrpipe.synth.render.painter import Painter
from attrpipe.synth.render.registry import canonical_values, product_spec
from attrpipe.synth.render.spec import ProductSpec, RenderError
from attrpipe.taxonomy import Vertical

__all__ = ["render_listing", "backdrop"]

def _product_layer(spec: ProductSpec, values: dict[str, str], rng: random.Random, size: int) -> Image.Image:
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


def backdrop(rng: random.Random, d: float, size: int) -> Image.Image:
    """A ``size`` square background at nuisance level ``d``: near-white at 0; with ``d``, colours, a gradient, a wall
    and floor, planks or tiles."""
    c1 = _random_bg_colour(rng, d)
    if d <= 0 or rng.random() > 0.75 * d:
        return Image.new("RGB", (size, size), c1)
    c2 = shade(c1, rng.uniform(0.6, 0.9)) if rng.random() < 0.6 else _random_bg_colour(rng, d)
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
            dr.line([(x, y), (x, y + rng.randint(5, size // 6))], fill=shade(c1, 0.93), width=1)
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
    img = backdrop(rng, d, size)
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
                py + prod.height + size * 0.02], fill=shade(bg, 0.85))
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
                   difficulty: float = 0.3, size: int = 256,
                   view_labels: Sequence[dict[str, str]] | None = None) -> list[Image.Image]:
    """``n_views`` RGB ``size x size`` views of one product whose visible attributes are drawn per ``labels``.
    ``view_labels``: one label set per view instead (a view that shows an attribute otherwise: another light, a
    part hidden, a different item in the photo); each view's product is then drawn from its own labels."""
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    if view_labels is not None and len(view_labels) != n_views:
        raise ValueError(f"view_labels: {len(view_labels)} label sets for {n_views} views")
    spec = product_spec(vertical.name)
    if view_labels is None:
        product = _product_layer(spec, canonical_values(vertical, spec, labels), rng, size)
        products = [product] * n_views
    else:
        products = [_product_layer(spec, canonical_values(vertical, spec, shown), rng, size) for shown in view_labels]
    return [_compose_view(products[k], rng, difficulty * (0.5 if k == 0 else 1.0), size, spec.mirror)
            for k in range(n_views)]
