"""Every vertical's drawing, from the product families, and what the rest of the package asks of them: what a
vertical draws (:func:`renderable_attributes`, :func:`check_renderable`), labels it can show (:func:`sample_labels`)
and the canonical values a drawing gets (:func:`canonical_values`)."""

from __future__ import annotations

import random

from attrpipe.synth.render import accessories, apparel, footwear, luggage
from attrpipe.synth.render.colours import value_key
from attrpipe.synth.render.spec import ProductSpec, RenderError
from attrpipe.taxonomy import Vertical

__all__ = ["product_spec", "renderable_attributes", "check_renderable", "sample_labels", "canonical_values"]

_REGISTRY: dict[str, ProductSpec] = {**apparel.PRODUCTS, **luggage.PRODUCTS, **accessories.PRODUCTS,
                                     **footwear.PRODUCTS}


def product_spec(vertical: str) -> ProductSpec:
    """The drawing of ``vertical`` (:class:`RenderError` if there is none)."""
    try:
        return _REGISTRY[vertical]
    except KeyError:
        raise RenderError(f"no renderer for vertical {vertical!r}; known: {sorted(_REGISTRY)}") from None


def renderable_attributes(vertical: str) -> dict[str, tuple[str, ...]]:
    """What the renderer draws for ``vertical``: attribute -> drawable values."""
    return dict(product_spec(vertical).attributes)


def check_renderable(vertical: Vertical) -> None:
    """Raise :class:`RenderError` unless every inferable attribute and value of ``vertical`` is really drawn."""
    drawn = renderable_attributes(vertical.name)
    problems = []
    for a in vertical.inferable_attributes():
        if a.name not in drawn:
            problems.append(f"inferable attribute {a.name!r} is not drawn (drawn: {sorted(drawn)})")
            continue
        keys = {value_key(v) for v in drawn[a.name]}
        bad = [v for v in a.values if value_key(v) not in keys]
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
        if spec is None or all(ok(canonical_values(vertical, spec, labels)) for ok in spec.constraints):
            return labels
    return labels


def canonical_values(vertical: Vertical, spec: ProductSpec, labels: dict[str, str]) -> dict[str, str]:
    """Drawn attribute -> canonical drawable value; defaults for attributes that are absent or not inferable."""
    out = {}
    for name, values in spec.attributes.items():
        attr = vertical.attributes.get(name)
        if attr is None or not attr.inferable:
            out[name] = values[0]
            continue
        if name not in labels:
            raise RenderError(f"{vertical.name}: labels lack the visible attribute {name!r}")
        k = value_key(str(labels[name]))
        match = [v for v in values if value_key(v) == k]
        if not match:
            raise RenderError(f"{vertical.name}.{name}: cannot draw value {labels[name]!r}")
        out[name] = match[0]
    return out
