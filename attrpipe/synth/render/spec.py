"""What a product drawing declares: its draw function, the attributes and values it draws, the combinations it
cannot show; and :func:`draws`, the decorator that enters a draw function in its family's table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from attrpipe.synth.render.colours import COLOURS
from attrpipe.synth.render.painter import Painter

__all__ = ["RenderError", "ProductSpec", "COLOUR_VALUES", "draws"]


class RenderError(ValueError):
    """The renderer cannot draw a vertical, attribute or value (or a visible label is missing)."""


@dataclass(frozen=True)
class ProductSpec:
    draw: Callable[[Painter, dict[str, str]], None]
    attributes: dict[str, tuple[str, ...]]  # attribute -> drawable values (canonical spelling); first = default
    constraints: tuple[Callable[[dict[str, str]], bool], ...] = ()
    mirror: bool = True  # may views show it mirrored? (not a watch: its digits would read backwards)


COLOUR_VALUES = tuple(COLOURS)


def draws(table: dict[str, ProductSpec], name: str, attributes: dict[str, Sequence[str]],
          constraints: Sequence[Callable] = (), mirror: bool = True):
    """Decorator: the function draws vertical ``name``; enter it in ``table`` with what it draws."""
    def deco(fn):
        table[name] = ProductSpec(fn, {a: tuple(v) for a, v in attributes.items()}, tuple(constraints), mirror)
        return fn

    return deco
