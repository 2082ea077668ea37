"""Outlines from a few points, in any coordinates: smooth splines, wobbly blobs and stars."""

from __future__ import annotations

import math
import random
from typing import Sequence

__all__ = ["Pt", "spline", "blob", "star"]

Pt = tuple[float, float]


def spline(points: Sequence[Pt], closed: bool = True, steps: int = 6) -> list[Pt]:
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


def blob(rng: random.Random, cx: float, cy: float, r: float, n: int = 7, wobble: float = 0.35) -> list[Pt]:
    """A closed, smooth, irregular outline through ``n`` points around ``(cx, cy)`` at radius ``r``, each point's
    radius varied by up to a fraction ``wobble``."""
    pts = []
    for i in range(n):
        a = 2 * math.pi * i / n + rng.uniform(-0.2, 0.2)
        rr = r * (1 + rng.uniform(-wobble, wobble))
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return spline(pts, closed=True, steps=4)


def star(cx: float, cy: float, r: float, points: int = 5, inner: float = 0.45, rot: float = -math.pi / 2) -> list[Pt]:
    """A star polygon of ``points`` tips at radius ``r``, its notches at ``inner * r``."""
    out = []
    for i in range(points * 2):
        rr = r if i % 2 == 0 else r * inner
        a = rot + math.pi * i / points
        out.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return out
