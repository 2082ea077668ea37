"""The catalog taxonomy: verticals, their attributes, and each attribute's closed set of allowed values.

A taxonomy is a directory of YAML files, one per vertical (``conf/taxonomy/<vertical>.yaml``)::

    name: suitcase              # the vertical's id, must equal the file stem
    display_name: suitcase      # how the prompt names it ("... for this suitcase")
    attributes:
      pattern:
        description: The dominant surface pattern of the suitcase shell.
        inferable: true         # can it be seen in images at all?
        values: [Solid, Striped, ...]

Everything is validated on load; any problem is a :class:`TaxonomyError` naming the file and the key.

The category question ("which vertical is this?") is not special: :meth:`Taxonomy.category_attribute` returns an
ordinary closed-set :class:`Attribute` whose values are the verticals' display names, so prompts, parsing,
consensus and pairing serve it unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import yaml

from attrpipe.parsing import normalize_value

__all__ = ["Attribute", "Vertical", "Taxonomy", "TaxonomyError", "load_taxonomy", "CATEGORY_ATTRIBUTE"]

CATEGORY_ATTRIBUTE = "category"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_VERTICAL_KEYS = {"name", "display_name", "attributes"}
_ATTRIBUTE_KEYS = {"description", "inferable", "values"}


class TaxonomyError(ValueError):
    """A taxonomy file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Attribute:
    name: str
    description: str
    values: tuple[str, ...]
    inferable: bool = True

    def __post_init__(self) -> None:
        where = f"attribute {self.name!r}"
        if not _NAME_RE.match(self.name or ""):
            raise TaxonomyError(f"{where}: name must match {_NAME_RE.pattern}")
        if not isinstance(self.description, str) or not self.description.strip():
            raise TaxonomyError(f"{where}.description: must be a non-empty string")
        if not isinstance(self.inferable, bool):
            raise TaxonomyError(f"{where}.inferable: must be true or false, got {self.inferable!r}")
        if len(self.values) < 2:
            raise TaxonomyError(f"{where}.values: needs at least 2 allowed values, got {len(self.values)}")
        seen: dict[str, str] = {}
        for v in self.values:
            if not isinstance(v, str) or not v.strip():
                raise TaxonomyError(f"{where}.values: every value must be a non-empty string, got {v!r}")
            if v != v.strip():
                raise TaxonomyError(f"{where}.values: {v!r} has leading or trailing spaces")
            key = normalize_value(v)
            if not key:
                raise TaxonomyError(f"{where}.values: {v!r} has no letters or digits")
            if key in seen:
                raise TaxonomyError(
                    f"{where}.values: {v!r} duplicates {seen[key]!r} (equal after normalising case, spacing "
                    "and punctuation, so an answer could not tell them apart)"
                )
            seen[key] = v


@dataclass(frozen=True)
class Vertical:
    name: str
    display_name: str
    attributes: dict[str, Attribute] = field(default_factory=dict)

    def inferable_attributes(self) -> list[Attribute]:
        return [a for a in self.attributes.values() if a.inferable]


@dataclass(frozen=True)
class Taxonomy:
    verticals: dict[str, Vertical]

    def __post_init__(self) -> None:
        if not self.verticals:
            raise TaxonomyError("taxonomy has no verticals")

    def vertical(self, name: str) -> Vertical:
        try:
            return self.verticals[name]
        except KeyError:
            raise KeyError(f"unknown vertical {name!r}; known: {sorted(self.verticals)}") from None

    def attribute(self, vertical: str, attribute: str) -> Attribute:
        if attribute == CATEGORY_ATTRIBUTE:
            return self.category_attribute()
        v = self.vertical(vertical)
        try:
            return v.attributes[attribute]
        except KeyError:
            raise KeyError(f"vertical {vertical!r} has no attribute {attribute!r}") from None

    def category_attribute(self) -> Attribute:
        """The vertical question as an ordinary closed-set attribute over the verticals' display names."""
        return Attribute(
            name=CATEGORY_ATTRIBUTE,
            description="The kind of product shown in the images.",
            values=tuple(v.display_name for v in self.verticals.values()),
            inferable=True,
        )

    def match_vertical(self, name: object, loose: bool = False) -> str | None:
        """The taxonomy's vertical a catalog row names: ``name`` itself when it is one; with ``loose``, the one vertical
        whose name differs from it only by case or surrounding spaces (``" Watch"`` -> ``watch``); else None."""
        if not isinstance(name, str):
            return None
        if name in self.verticals:
            return name
        if not loose:
            return None
        key = name.strip().casefold()
        hits = [v for v in self.verticals if v.strip().casefold() == key]
        return hits[0] if len(hits) == 1 else None

    def vertical_for_display_name(self, display_name: str) -> str:
        for v in self.verticals.values():
            if v.display_name == display_name:
                return v.name
        raise KeyError(display_name)

    def subset(self, names: Iterable[str]) -> "Taxonomy":
        names = list(names)
        unknown = [n for n in names if n not in self.verticals]
        if unknown:
            raise TaxonomyError(f"unknown verticals {unknown}; known: {sorted(self.verticals)}")
        return Taxonomy({n: self.verticals[n] for n in names})


def _refuse_unknown_keys(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise TaxonomyError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _vertical_from_dict(data: object, source: str) -> Vertical:
    if not isinstance(data, dict):
        raise TaxonomyError(f"{source}: expected a mapping at the top level")
    _refuse_unknown_keys(data, _VERTICAL_KEYS, source)
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise TaxonomyError(f"{source}: name: must match {_NAME_RE.pattern}, got {name!r}")
    display = data.get("display_name", name.replace("_", " "))
    if not isinstance(display, str) or not display.strip():
        raise TaxonomyError(f"{source}: display_name: must be a non-empty string")
    attrs_raw = data.get("attributes")
    if not isinstance(attrs_raw, dict) or not attrs_raw:
        raise TaxonomyError(f"{source}: attributes: must be a non-empty mapping of attribute name to spec")
    attrs: dict[str, Attribute] = {}
    for aname, spec in attrs_raw.items():
        where = f"{source}: attributes.{aname}"
        if aname == CATEGORY_ATTRIBUTE:
            raise TaxonomyError(f"{where}: {CATEGORY_ATTRIBUTE!r} is reserved for the vertical question")
        if not isinstance(spec, dict):
            raise TaxonomyError(f"{where}: expected a mapping with {sorted(_ATTRIBUTE_KEYS)}")
        _refuse_unknown_keys(spec, _ATTRIBUTE_KEYS, where)
        values = spec.get("values")
        if not isinstance(values, list):
            raise TaxonomyError(f"{where}.values: must be a list of strings")
        try:
            attrs[aname] = Attribute(
                name=str(aname),
                description=spec.get("description", ""),
                values=tuple(values),
                inferable=spec.get("inferable", True),
            )
        except TaxonomyError as e:
            raise TaxonomyError(f"{source}: {e}") from None
    return Vertical(name=name, display_name=display.strip(), attributes=attrs)


def load_taxonomy(path: str | Path, verticals: Iterable[str] | None = None) -> Taxonomy:
    """Load and validate every ``*.yaml`` in ``path`` (a directory), optionally keeping only ``verticals``."""
    root = Path(path)
    if not root.is_dir():
        raise TaxonomyError(f"taxonomy directory {str(root)!r} does not exist")
    files = sorted(root.glob("*.yaml"))
    if not files:
        raise TaxonomyError(f"taxonomy directory {str(root)!r} has no *.yaml files")
    out: dict[str, Vertical] = {}
    displays: dict[str, str] = {}
    for f in files:
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise TaxonomyError(f"{f}: not valid YAML: {e}") from None
        v = _vertical_from_dict(data, str(f))
        if v.name != f.stem:
            raise TaxonomyError(f"{f}: name {v.name!r} must equal the file name {f.stem!r}")
        if v.display_name in displays:
            raise TaxonomyError(f"{f}: display_name {v.display_name!r} already used by {displays[v.display_name]!r}")
        displays[v.display_name] = v.name
        out[v.name] = v
    tax = Taxonomy(out)
    try:
        if len(out) >= 2:  # the vertical question must be answerable: display names distinct as answers
            tax.category_attribute()
    except TaxonomyError as e:
        raise TaxonomyError(f"{root}: display names of the verticals: {e}") from None
    if verticals:
        tax = tax.subset(verticals)
    return tax
