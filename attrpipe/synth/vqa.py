"""Generic visual questions for pretraining a small vision-language model from scratch (``attrpipe synth pretrain``).

A real pretrained VLM already sees colours, shapes, counts and patterns, has seen captioned product photos, and
can name what a heel or a neckline looks like, before anyone teaches it our task. These examples teach that, drawn
with the synthetic renderer's own colour table, pattern textures, painter and product renderer, but never with the
task's question (its wording, the attribute's description, its full option list in the taxonomy's order):

- scenes of plain figures and cloth swatches, questions in other words ("Which colour is the star?", "How many
  circles can you count?");
- ``part``: one photo of a product, the colour or the print of one of its parts ("Which colour is the strap in this
  photo?"), five of that attribute's values as options, the part's visual evidence as the reasoning;
- ``feature``: one photo of a product, one of its other visible features in a describer's words ("What heel type
  does the sandal in this photo have?"), up to five of its names as options in random order, the visual evidence as
  the reasoning. This is the "knows what a block heel is called" side of a real VLM; what it does not know is our
  prompt, the attributes' descriptions and the closed option lists;
- ``caption``: one photo of a product, "Describe this product and say what it is." The reasoning describes what a few
  of its attributes look like, in the words a describer would use ("the heel is a thick rectangular block"); the
  answer is the kind of product, one of five: the web-caption side of a real VLM's pretraining.
- ``view``: two to five photos of products of one kind, and a part or feature question about the one named by its
  place ("Which colour is the strap in picture 3?", the images labelled "Picture 1:", "Picture 2:" ... as
  ``pretrain.picture_labels`` makes the chat template do); the other photos show other values of that attribute, so
  the answer is read off the photo named. The reasoning names the photo first ("In picture 3 the strap is mostly
  red."): the "looks at one photo at a time" side of a real VLM, which the catalog's views teacher relies on.

Each example is one image (a view question: several), a question with its options (the user text) and the answer in
the method's format (``<reasoning> ... </reasoning><answer> ... </answer>``, after the same system prompt), so the
pretrained model also follows the format instruction as an instruct model does. Everything is a pure function of the
``random.Random`` passed in. :func:`vqa_records` turns examples into training records
(:data:`attrpipe.train.examples.RECORD_SCHEMA`).
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from typing import Iterator, Sequence

from PIL import Image

from attrpipe.prompts import OPTIONS_SEPARATOR, format_target, user_text
from attrpipe.synth.render.colours import COLOURS, PATTERNS
from attrpipe.synth.render.geometry import star
from attrpipe.synth.render.listing import backdrop, render_listing
from attrpipe.synth.render.painter import Painter
from attrpipe.synth.render.registry import sample_labels
from attrpipe.taxonomy import Taxonomy

__all__ = ["KINDS", "SHAPES", "SCHEDULE", "REASONING", "Offer", "check_schedule", "check_reasoning", "VQAExample",
           "render_vqa", "vqa_examples", "vqa_records", "vqa_corpus"]

KINDS = ("colour", "shape", "count", "pattern", "swatch_colour", "caption", "part", "feature", "view")
# The order examples cycle through: products (captions, parts, features) are nine in fourteen.
SCHEDULE = ("colour", "caption", "part", "feature", "shape", "feature", "part", "count", "caption", "feature",
            "pattern", "part", "feature", "swatch_colour")
_CAPTION_ATTRIBUTES = 3  # a caption describes at most this many attributes of the product
_CAPTION_RENDER_SIZE = 256  # products are drawn at the catalog's size, then resized as the pipeline resizes them
SHAPES = ("Circle", "Square", "Triangle", "Star", "Hexagon", "Diamond")
MAX_COUNT = 6
VIEW_PHOTOS = (2, 5)  # a view question shows this many photos, at least and at most
_N_OPTIONS = 5
# How a part or feature question's reasoning reads (``pretrain.reasoning``): "evidence", the visual evidence alone
# ("The heel is a thick block."); "explained", the evidence and the answer it points to, in one of the teacher's
# phrasings that do not echo the task's question (attrpipe.synth.catalog.GENERIC_TEMPLATES: "The heel is a thick
# block, so the heel type is Block."), as a real instruct model has read reasoning of that kind before any task;
# "descriptors", explained, with a colour named by one of its shades and a print by one of its motifs, as the
# catalog's descriptors teacher names them ("The strap is cobalt, so the strap color is Blue.").
REASONING = ("evidence", "explained", "descriptors")


@dataclass(frozen=True)
class Offer:
    """What a ``part`` or ``feature`` question offers as options (``pretrain.options``).

    ``values``: how many of the attribute's values, the answer among them (0: every value, shuffled and never in the
    taxonomy's order). ``distractors``: the chance that one option more is something that is not a value of the
    asked attribute at all (the kind of product, or a value of another attribute), so that the answer has to be read
    off the offered values of the attribute asked about, not off the kind of question."""

    values: int = _N_OPTIONS
    distractors: float = 0.0

    def __post_init__(self):
        if self.values < 0 or self.values == 1:
            raise ValueError(f"pretrain.options.attribute_values must be 0 (all) or >= 2, not {self.values}")
        if not 0.0 <= self.distractors <= 1.0:
            raise ValueError(f"pretrain.options.distractors must be in [0, 1], not {self.distractors}")

_QUESTIONS = {
    "colour": ("Which colour is the {shape} in this picture?", "What colour has the {shape} been painted?",
               "Name the colour of the {shape}."),
    "shape": ("Which figure is drawn here?", "What shape do you see in the picture?",
              "Name the geometric figure in the image."),
    "count": ("How many {shapes} can you count?", "Count the {shapes} in the picture.",
              "What is the number of {shapes} shown?"),
    "pattern": ("What design is printed on the cloth swatch?", "Which kind of print covers the fabric sample?",
                "Describe the surface design of the swatch."),
    "swatch_colour": ("What is the main colour of the cloth swatch?", "Which colour dominates the fabric sample?",
                      "Name the base colour of the swatch."),
    "part_colour": ("Which colour is {part} in this photo?", "What colour has {part} got?",
                    "Name the colour of {part}."),
    "part_pattern": ("Which print is on {part}?", "What kind of print does {part} show?",
                     "Name the print of {part}."),
    "feature": ("What {label} does the {vd} in this photo have?", "Look at the {vd} in the photo: which {label} is it?",
                "Name the {label} you can see on this {vd}."),
    "view_colour": ("Which colour is {part} in {photo}?", "Look at {photo}: what colour has {part} got?",
                    "Name the colour of {part} in {photo}."),
    "view_pattern": ("Which print is on {part} in {photo}?", "Look at {photo}: what kind of print does {part} show?",
                     "Name the print of {part} in {photo}."),
    "view_feature": ("What {label} does the {vd} in {photo} have?", "Look at {photo}: which {label} is it?",
                     "Name the {label} of the {vd} in {photo}."),
    "caption": ("Describe this product and say what it is.", "What does the photo show? Describe the item.",
                "Write a short description of the item in the photo and name it."),
}
_REASONS = {
    "colour": "There is one {shape_lc} in the picture and it is filled with {answer_lc}.",
    "shape": "The figure in the picture is a {answer_lc}.",
    "count": "I count the {shapes_lc} one by one and find {answer}.",
    "pattern": "The swatch shows a {answer_lc} design over its whole surface.",
    "swatch_colour": "Most of the swatch is {answer_lc}; any other colour only makes up its print.",
}


@dataclass(frozen=True)
class VQAExample:
    image: Image.Image
    kind: str
    question: str
    options: tuple[str, ...]
    answer: str
    reasoning: str
    more_images: tuple[Image.Image, ...] = ()  # a view question's other photos, after ``image``

    @property
    def images(self) -> list[Image.Image]:
        return [self.image, *self.more_images]

    @property
    def user_text(self) -> str:
        return f"{self.question} Options: {OPTIONS_SEPARATOR.join(self.options)}"

    @property
    def target(self) -> str:
        return format_target(self.reasoning, self.answer)


def _figure(p: Painter, shape: str, cx: float, cy: float, r: float, colour, rot: float) -> None:
    """One figure of radius ``r`` (unit coordinates) centred at ``(cx, cy)``."""
    def ring(n: int, radius: float, offset: float) -> list[tuple[float, float]]:
        return [(cx + radius * math.cos(offset + 2 * math.pi * i / n), cy + radius * math.sin(offset + 2 * math.pi * i / n))
                for i in range(n)]

    if shape == "Circle":
        shapes = [("ellipse", (cx - r, cy - r, cx + r, cy + r))]
    elif shape == "Square":
        shapes = [("poly", ring(4, r * 1.25, rot + math.pi / 4))]
    elif shape == "Diamond":
        shapes = [("poly", [(cx, cy - r * 1.2), (cx + r * 0.75, cy), (cx, cy + r * 1.2), (cx - r * 0.75, cy)])]
    elif shape == "Triangle":
        shapes = [("poly", ring(3, r * 1.2, rot - math.pi / 2))]
    elif shape == "Hexagon":
        shapes = [("poly", ring(6, r * 1.1, rot))]
    elif shape == "Star":
        shapes = [("poly", star(cx, cy, r * 1.25, inner=0.4, rot=rot - math.pi / 2))]
    else:  # pragma: no cover - programming error
        raise ValueError(shape)
    p.part(shapes, colour)


def _options(rng: random.Random, answer: str, pool: Sequence[str], n: int = _N_OPTIONS) -> tuple[str, ...]:
    others = rng.sample([v for v in pool if v != answer], min(n - 1, len(pool) - 1))
    options = others + [answer]
    rng.shuffle(options)
    return tuple(options)


def _offered(rng: random.Random, answer: str, values: Sequence[str], offer: Offer,
             distractors: Sequence[str]) -> tuple[str, ...]:
    """The options of an attribute question under ``offer``: some or all of the attribute's ``values`` (never all of
    them in the taxonomy's order), then perhaps one of ``distractors`` at a random place."""
    if offer == Offer():  # the original question set: five values (draws exactly as it always did)
        return _options(rng, answer, values)
    options = list(_options(rng, answer, values, offer.values or len(values)))
    if len(options) == len(values) > 1 and options == list(values):
        options = options[1:] + options[:1]  # shuffled into the taxonomy's order: never offered that way
    pool = [d for d in distractors if d not in values]
    if pool and rng.random() < offer.distractors:
        options.insert(rng.randrange(len(options) + 1), rng.choice(pool))
    return tuple(options)


def _contrasting_colour(rng: random.Random, background) -> str:
    """A label colour far enough from the background to be seen."""
    names = [n for n, c in COLOURS.items() if math.dist(c, background) > 90] or list(COLOURS)
    return rng.choice(names)


def _draw(rng: random.Random, vertical, labels: dict[str, str], size: int) -> Image.Image:
    """A product of ``vertical`` with ``labels``, drawn at the catalog's size and resized as the pipeline does."""
    image = render_listing(vertical, labels, rng, n_views=1, size=_CAPTION_RENDER_SIZE)[0]
    return image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def _product_photo(rng: random.Random, vertical, size: int) -> tuple[dict[str, str], Image.Image]:
    """A product of ``vertical`` with sampled labels, drawn (:func:`_draw`)."""
    labels = sample_labels(vertical, rng)
    return labels, _draw(rng, vertical, labels, size)


def _other_values(vertical, attribute) -> list[str]:
    """What a question about ``attribute`` may offer as a distractor: the product's kind, another attribute's values."""
    return [vertical.display_name] + [v for a in vertical.inferable_attributes() if a is not attribute
                                      for v in a.values]


def render_caption(rng: random.Random, size: int, taxonomy: Taxonomy) -> VQAExample:
    """A product of a random vertical, described: a few attributes' visual evidence, then what the product is."""
    from attrpipe.synth.catalog import evidence_text, sentence

    names = sorted(taxonomy.verticals)
    vertical = taxonomy.verticals[rng.choice(names)]
    labels, image = _product_photo(rng, vertical, size)
    attributes = [a for a in vertical.inferable_attributes() if a.name in labels]
    described = rng.sample(attributes, min(_CAPTION_ATTRIBUTES, len(attributes)))
    clauses = [evidence_text(vertical, a, labels[a.name], rng) for a in described]
    reasoning = " ".join(sentence(c) for c in clauses)
    answer = vertical.display_name
    pool = tuple(sorted({v.display_name for v in taxonomy.verticals.values()}))
    return VQAExample(image, "caption", rng.choice(_QUESTIONS["caption"]), _options(rng, answer, pool), answer,
                      reasoning)


def render_attribute(rng: random.Random, size: int, taxonomy: Taxonomy, kind: str,
                     offer: Offer = Offer(), reasoning: str = "evidence") -> VQAExample:
    """One visible attribute of a product of a random vertical, asked in a describer's words: up to five of its values
    as options, its visual evidence as the reasoning. ``kind`` "part": the colour or the print of one part ("Which
    colour is the strap in this photo?"); "feature": any other visible feature, the heel, the neckline, the wheels...
    ("What heel type does the sandal in this photo have?"). A vertical without such an attribute is never drawn.
    ``offer``: how many values are offered, and whether a distractor joins them: the product's kind or a value of
    another of its attributes (:class:`Offer`). ``reasoning``: one of :data:`REASONING`; the image, question and options
    do not depend on it."""
    from attrpipe.synth.catalog import (GENERIC_TEMPLATES, descriptor_evidence, evidence_text, explained,
                                        part_described, sentence)

    if kind not in ("part", "feature"):
        raise ValueError(f"an attribute question is a part or a feature, not {kind!r}")
    check_reasoning(reasoning)

    def asked(vertical, attribute) -> bool:  # a part question asks a colour or a print, a feature one anything else
        return bool(part_described(vertical, attribute)) == (kind == "part")

    names = sorted(n for n, v in taxonomy.verticals.items() if any(asked(v, a) for a in v.inferable_attributes()))
    if not names:
        what = "a colour or print attribute" if kind == "part" else "a feature other than a colour or print"
        raise ValueError(f"no vertical of the taxonomy has {what} to ask about")
    vertical = taxonomy.verticals[rng.choice(names)]
    labels, image = _product_photo(rng, vertical, size)
    attribute = rng.choice([a for a in vertical.inferable_attributes() if asked(vertical, a)])
    answer = labels[attribute.name]
    clause = evidence_text(vertical, attribute, answer, rng)
    if kind == "part":
        what, part = part_described(vertical, attribute)
        question = rng.choice(_QUESTIONS[f"part_{what}"]).format(part=part)
        question = question[0].upper() + question[1:]
    else:
        question = rng.choice(_QUESTIONS["feature"]).format(label=attribute.name.replace("_", " "),
                                                            vd=vertical.display_name)
    options = _offered(rng, answer, attribute.values, offer, _other_values(vertical, attribute))
    if reasoning == "descriptors":  # drawn last: the image, question and options are those of the other reasonings
        clause = descriptor_evidence(vertical, attribute, answer, rng) or clause
    if reasoning in ("explained", "descriptors"):
        why = explained(vertical, attribute, answer, clause, rng, GENERIC_TEMPLATES)
    else:
        why = sentence(clause)
    return VQAExample(image, kind, question, options, answer, why)


def view_photos(rng: random.Random, vertical, attribute) -> tuple[list[dict[str, str]], int]:
    """The labels of a view question's photos (:data:`VIEW_PHOTOS`) and the place of the one asked about; every other
    photo shows another value of ``attribute`` than that one."""
    n = rng.randint(*VIEW_PHOTOS)
    target = rng.randrange(n)
    photos = [sample_labels(vertical, rng) for _ in range(n)]
    answer = photos[target][attribute.name]
    for k, labels in enumerate(photos):
        if k != target and labels[attribute.name] == answer:
            labels[attribute.name] = rng.choice([v for v in attribute.values if v != answer])
    return photos, target


def render_view(rng: random.Random, size: int, taxonomy: Taxonomy, offer: Offer = Offer(),
                reasoning: str = "evidence") -> VQAExample:
    """Two to five photos of products of one random vertical, and a question about one visible attribute of the photo
    named by its place (:func:`attrpipe.synth.catalog.view_phrase`); every other photo shows another value of that
    attribute. ``offer`` and ``reasoning`` as for :func:`render_attribute` ("explained" adds the answer in the
    teacher's first phrasing: "..., so the strap color is Red.")."""
    from attrpipe.synth.catalog import evidence_text, part_described, view_phrase, view_reasoning

    check_reasoning(reasoning)
    names = sorted(n for n, v in taxonomy.verticals.items() if any(len(a.values) > 1 for a in v.inferable_attributes()))
    if not names:
        raise ValueError("no vertical of the taxonomy has a visible attribute with two values or more")
    vertical = taxonomy.verticals[rng.choice(names)]
    attribute = rng.choice([a for a in vertical.inferable_attributes() if len(a.values) > 1])
    photos, target = view_photos(rng, vertical, attribute)
    answer = photos[target][attribute.name]
    images = [_draw(rng, vertical, labels, size) for labels in photos]
    photo = view_phrase(target)
    described = part_described(vertical, attribute)
    key = f"view_{described[0]}" if described else "view_feature"
    question = rng.choice(_QUESTIONS[key]).format(part=described[1] if described else "", photo=photo,
                                                  label=attribute.name.replace("_", " "), vd=vertical.display_name)
    question = question[0].upper() + question[1:]
    clause = evidence_text(vertical, attribute, answer, rng)
    why = view_reasoning(target, clause, attribute, None if reasoning == "evidence" else answer)
    options = _offered(rng, answer, attribute.values, offer, _other_values(vertical, attribute))
    return VQAExample(images[0], "view", question, options, answer, why, tuple(images[1:]))


_PRODUCT_KINDS = ("caption", "part", "feature", "view")


def render_vqa(rng: random.Random, size: int, kind: str | None = None, *,
               taxonomy: Taxonomy | None = None, offer: Offer = Offer(), reasoning: str = "evidence") -> VQAExample:
    """One generic question about one rendered scene (``size`` x ``size`` RGB); product kinds need the taxonomy;
    ``offer`` shapes the options of part and feature questions, ``reasoning`` (:data:`REASONING`) their reasoning."""
    kind = kind or rng.choice(KINDS)
    if kind not in KINDS:
        raise ValueError(f"unknown question kind {kind!r}; one of {KINDS}")
    if kind in _PRODUCT_KINDS:
        if taxonomy is None:
            raise ValueError(f"{kind} questions need a taxonomy (the products to draw)")
        if kind == "caption":
            return render_caption(rng, size, taxonomy)
        if kind == "view":
            return render_view(rng, size, taxonomy, offer, reasoning)
        return render_attribute(rng, size, taxonomy, kind, offer, reasoning)
    bg = backdrop(rng, 0.15, size).convert("RGB")
    bg_colour = bg.resize((1, 1)).getpixel((0, 0))
    p = Painter(size, rng)
    shape = rng.choice(SHAPES)
    if kind in ("colour", "shape"):
        colour = _contrasting_colour(rng, bg_colour)
        r = rng.uniform(0.18, 0.3)
        _figure(p, shape, rng.uniform(r + 0.05, 0.95 - r), rng.uniform(r + 0.05, 0.95 - r), r, COLOURS[colour],
                rng.uniform(-0.3, 0.3))
        answer, pool = (colour, tuple(COLOURS)) if kind == "colour" else (shape, SHAPES)
    elif kind == "count":
        n = rng.randint(1, MAX_COUNT)
        colour = _contrasting_colour(rng, bg_colour)
        cells = rng.sample([(i, j) for i in range(3) for j in range(3)], n)  # one figure per cell: none overlap
        for i, j in cells:
            r = rng.uniform(0.08, 0.12)
            _figure(p, shape, (i + 0.5) / 3 + rng.uniform(-0.04, 0.04), (j + 0.5) / 3 + rng.uniform(-0.04, 0.04), r,
                    COLOURS[colour], rng.uniform(-0.3, 0.3))
        answer, pool = str(n), tuple(str(k) for k in range(1, MAX_COUNT + 1))
    else:  # a cloth swatch: a patterned rounded rectangle
        colour = _contrasting_colour(rng, bg_colour)
        pattern = rng.choice(PATTERNS)
        x0, y0 = rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.2)
        x1, y1 = rng.uniform(0.8, 0.95), rng.uniform(0.8, 0.95)
        p.set_pattern_box((x0, y0, x1, y1))
        p.part([("rrect", (x0, y0, x1, y1), 0.04)], COLOURS[colour], pattern)
        answer, pool = (pattern, PATTERNS) if kind == "pattern" else (colour, tuple(COLOURS))
    bg.paste(p.img, (0, 0), p.img)
    shapes = shape.lower() + "s"
    question = rng.choice(_QUESTIONS[kind]).format(shape=shape.lower(), shapes=shapes)
    reasoning = _REASONS[kind].format(shape_lc=shape.lower(), shapes_lc=shapes, answer=answer,
                                      answer_lc=answer.lower())
    return VQAExample(bg, kind, question, _options(rng, answer, pool), answer, reasoning)


def check_schedule(schedule: Sequence[str] | None) -> tuple[str, ...]:
    """``schedule`` (default :data:`SCHEDULE`) as a tuple; an unknown kind of question is a ValueError."""
    schedule = tuple(schedule or SCHEDULE)
    unknown = sorted(set(schedule) - set(KINDS))
    if unknown:
        raise ValueError(f"pretrain.schedule: unknown question kinds {unknown}; each one of {KINDS}")
    return schedule


def check_reasoning(reasoning: str) -> str:
    """``reasoning`` if it is one of :data:`REASONING`; otherwise a ValueError."""
    if reasoning not in REASONING:
        raise ValueError(f"pretrain.reasoning: {reasoning!r} is not one of {REASONING}")
    return reasoning


def vqa_examples(n: int, *, seed: int, size: int, taxonomy: Taxonomy | None = None,
                 schedule: Sequence[str] | None = None, offer: Offer = Offer(),
                 reasoning: str = "evidence") -> Iterator[VQAExample]:
    """``n`` examples, the kinds in ``schedule``'s order (default :data:`SCHEDULE`; without products when no taxonomy
    is given); example ``i`` depends only on ``(seed, i)``, the taxonomy, the schedule, the offer and the reasoning."""
    schedule = check_schedule(schedule)
    check_reasoning(reasoning)
    if taxonomy is None:
        schedule = tuple(k for k in schedule if k not in _PRODUCT_KINDS)
        if not schedule:
            raise ValueError("pretrain.schedule asks only about products, and no taxonomy is given")
    for i in range(n):
        yield render_vqa(random.Random(f"vqa:{seed}:{i}"), size, schedule[i % len(schedule)], taxonomy=taxonomy,
                         offer=offer, reasoning=reasoning)


def vqa_records(examples: Iterator[VQAExample], *, prefix: str = "vqa") -> Iterator[dict]:
    """Training records (``RECORD_SCHEMA``) with the images inline as PNG."""
    for i, ex in enumerate(examples):
        encoded = []
        for image in ex.images:
            buf = io.BytesIO()
            image.save(buf, "PNG")
            encoded.append(buf.getvalue())
        yield {"example_id": f"{prefix}-{i:07d}", "prompt": ex.user_text, "completion": ex.target, "chosen": None,
               "rejected": None, "image_uris": [], "image_bytes": encoded}


def vqa_corpus(taxonomy: Taxonomy | None = None) -> list[str]:
    """Sentences for the tokenizer: every question, option list and answer shape the examples can produce, and with a
    taxonomy its task prompts and the catalog's reasoning for every value (a real VLM's tokenizer knows the words of
    its domain; this only shapes the BPE merges)."""
    from attrpipe.synth.catalog import reasoning_text

    lines = []
    if taxonomy is not None:
        for vertical in taxonomy.verticals.values():
            lines.append(vertical.display_name)
            for attribute in vertical.inferable_attributes():
                lines.append(user_text(attribute, vertical.display_name))
                for value in attribute.values:
                    lines.append(format_target(reasoning_text(vertical, attribute, value, random.Random(value)), value))
    for key, questions in _QUESTIONS.items():
        if key.startswith("view_"):  # added later: tokenizers built before them keep their merges
            continue
        for q in questions:
            for shape in SHAPES:
                lines.append(q.format(shape=shape.lower(), shapes=shape.lower() + "s", part="the " + shape.lower(),
                                      label="shape", vd=shape.lower()))
    for reason in _REASONS.values():
        for answer in (*COLOURS, *PATTERNS, *SHAPES, *(str(k) for k in range(1, MAX_COUNT + 1))):
            lines.append(format_target(reason.format(shape_lc="star", shapes_lc="stars", answer=answer,
                                                     answer_lc=answer.lower()), answer))
    lines.append("Options: " + OPTIONS_SEPARATOR.join((*COLOURS, *PATTERNS, *SHAPES)))
    return lines
