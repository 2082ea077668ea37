"""Write a synthetic catalog with known ground truth: seed, unlabeled and test splits plus the images.

Layout (``docs/data-format.md``)::

    out_dir/
      catalog.json                  arguments, counts per split and vertical, label noise, format version
      images/<listing_id>_<k>.jpg   1..max_views views per listing (JPEG, quality 90)
      seed/part-00000.parquet       LABELED_SCHEMA: seed_per_vertical listings per vertical, labels + reasoning
      unlabeled/part-00000.parquet  CATALOG_SCHEMA: ``listings`` listings spread round-robin over the verticals
      test/part-00000.parquet       LABELED_SCHEMA: test_per_vertical listings per vertical, clean labels
      truth/unlabeled.parquet       listing_id, vertical, labels: ground truth of the unlabeled pool

**Image URIs are relative to the catalog root** (``out_dir``, the directory holding ``catalog.json``), e.g.
``images/seed-watch-000003_0.jpg``, never ``../images/...`` (relative URIs may not contain ``..``). A reader of
``out_dir/seed`` resolves them against ``out_dir`` (``data.root``), not against ``out_dir/seed``.

``labels`` of the seed and test splits hold every *inferable* attribute; ``truth/unlabeled.parquet`` holds every
attribute (non-inferable ones too, for studies that ask them anyway). ``seller_attributes`` carries the
non-inferable values, as a seller would declare them (fabric, warranty...); it is never a label.

With ``label_noise`` p, round(p * number of seed labels) seed labels, chosen at random, are replaced by a different
allowed value (and their reasoning argues for the wrong value); ``catalog.json`` lists each one.

With ``view_noise`` q, each view of a listing shows each visible attribute otherwise with probability q (another of
its values: the light, the angle, a different item in the photo); the labels stay the truth, and the value most views
show is more often the truth than any one view's. The ``views`` teacher names the one view its evidence comes from
("In picture 2 ..."), always a view that shows the label. The ``descriptors`` teacher names a colour by one of its
shades and a print by one of its motifs (:data:`SHADES`, :data:`PRINTS`): several reasoning paths to one value.

Everything is a pure function of the arguments: each listing draws from its own ``random.Random`` derived from
(seed, split, vertical, index), so listings do not depend on the order they are made in or on the other splits,
and two runs with the same arguments write byte-identical Parquet, JPEG and JSON files (the same pyarrow and
Pillow versions assumed). Parquet files and ``catalog.json`` are written atomically; ``catalog.json`` is removed
first and written last, so a directory with a ``catalog.json`` is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from attrpipe.schemas import CATALOG_SCHEMA, LABELED_SCHEMA
from attrpipe.synth.render.listing import render_listing
from attrpipe.synth.render.registry import check_renderable, sample_labels
from attrpipe.taxonomy import Attribute, Taxonomy, Vertical

__all__ = ["FORMAT_VERSION", "TRUTH_SCHEMA", "write_synthetic_catalog", "reasoning_text", "evidence_text",
           "sentence", "TEACHERS", "SHADES", "PRINTS", "descriptor_evidence", "part_described", "listing_rng",
           "view_labels", "view_phrase", "view_reasoning"]

FORMAT_VERSION = 1
JPEG_QUALITY = 90
SPLITS = ("seed", "unlabeled", "test")
TRUTH_SCHEMA = pa.schema(
    [
        pa.field("listing_id", pa.string(), nullable=False),
        pa.field("vertical", pa.string(), nullable=False),
        pa.field("labels", pa.map_(pa.string(), pa.string()), nullable=False),
    ]
)
_IMAGE_RE = re.compile(r"^(seed|unlabeled|test)-[a-z0-9_]+-\d{6}_\d+\.jpg$")


def listing_rng(seed: int, *parts: object) -> random.Random:
    """A ``random.Random`` that depends only on ``seed`` and ``parts`` (stable across runs and Python versions)."""
    text = "\x1f".join(str(p) for p in (seed, *parts))
    return random.Random(int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big"))


# --------------------------------------------------------------------------------------------------------------
# Teacher-style reasoning from the ground truth: what the image shows, then the value.

_PART = {  # what a colour / pattern attribute describes, by (vertical, attribute) or attribute
    ("suitcase", "color"): "the shell", ("suitcase", "pattern"): "the shell",
    ("shoe", "color"): "the upper", ("sandal", "color"): "the straps and sole",
    ("slipper_flip_flop", "color"): "the footbed", ("sari", "color"): "the body of the sari",
    ("sari", "pattern"): "the body of the sari", ("trouser", "pattern"): "the trouser fabric",
    "color": "the {vd}", "pattern": "the {vd}", "top_color": "the top", "top_pattern": "the top",
    "bottom_color": "the bottom wear", "strap_color": "the strap", "dial_color": "the dial",
    "border_color": "the border", "sole_color": "the outsole", "footbed_pattern": "the footbed",
}
_COLOUR_ATTRS = {"color", "top_color", "bottom_color", "strap_color", "dial_color", "border_color", "sole_color"}
_PATTERN_ATTRS = {"pattern", "top_pattern", "footbed_pattern"}
_COLOUR_PHRASES = ("{part} is mostly {c}", "{part} shows a clear {c} colour", "the dominant colour of {part} is {c}")
# The descriptors teacher names a shade, a finer word than the options: several shades lead to one colour value, and
# values have different numbers of them, as colour names do (Blue: six here, Silver: one). The shade is drawn at random
# among the value's (the image shows the value's colour): a teacher's choice of words, not something the pixels tell
# apart. Greedy decoding follows the single most likely shade; a vote of sampled chains adds them up by their value.
SHADES: dict[str, tuple[str, ...]] = {
    "Black": ("jet black", "ink black"),
    "White": ("bright white", "pure white"),
    "Grey": ("slate grey", "ash grey", "smoke grey", "charcoal grey"),
    "Silver": ("silver",),
    "Gold": ("gold",),
    "Navy Blue": ("navy", "midnight blue"),
    "Blue": ("cobalt", "royal blue", "azure", "sky blue", "denim blue", "cerulean"),
    "Teal": ("teal", "peacock blue-green"),
    "Green": ("emerald", "forest green", "bottle green", "mint green", "sage", "lime green"),
    "Olive": ("olive", "khaki green"),
    "Yellow": ("lemon yellow", "mustard", "sunflower yellow"),
    "Orange": ("tangerine", "rust orange"),
    "Red": ("scarlet", "crimson", "cherry red", "tomato red", "brick red"),
    "Maroon": ("maroon", "burgundy", "wine"),
    "Pink": ("rose", "blush", "fuchsia", "baby pink", "coral pink"),
    "Purple": ("violet", "plum", "lavender", "mauve"),
    "Brown": ("chocolate", "coffee brown", "chestnut"),
    "Tan": ("camel", "light tan"),
    "Beige": ("sand", "fawn"),
    "Cream": ("cream",),
}
# ... and a print by the motif it sees, in the same way (Floral: five motifs, Polka Dot: one).
PRINTS: dict[str, tuple[str, ...]] = {
    "Solid": ("no print at all",),
    "Striped": ("pinstripes", "broad stripes", "candy stripes", "pencil stripes"),
    "Checkered": ("gingham checks", "tartan checks", "windowpane checks"),
    "Polka Dot": ("polka dots",),
    "Floral": ("roses", "daisies", "hibiscus flowers", "tulips", "small blossoms"),
    "Geometric": ("triangles and diamonds", "hexagons", "interlocking squares"),
    "Abstract": ("free-form swirls", "brushstroke blobs"),
    "Animal Print": ("leopard spots", "cheetah spots", "snakeskin scales"),
    "Camouflage": ("camouflage blotches",),
    "Graphic Print": ("one large graphic motif", "a printed slogan graphic"),
    "Colorblock": ("large blocks of colour",),
    "Textured": ("a fine hatched texture",),
    "Chevron": ("zigzag chevrons", "V-shaped bands"),
    "Paisley": ("paisley teardrops", "mango-shaped motifs"),
}
_PATTERN_PHRASES = {
    "Solid": "{part} is one plain colour without any print",
    "Striped": "parallel stripes run across {part}",
    "Checkered": "crossing lines form a grid of checks on {part}",
    "Polka Dot": "evenly spaced round dots cover {part}",
    "Floral": "small flowers with petals are printed all over {part}",
    "Geometric": "repeating triangles and diamonds form a geometric print on {part}",
    "Abstract": "irregular free-form swirls and blobs make an abstract print on {part}",
    "Animal Print": "broken ring-shaped spots like a leopard's coat cover {part}",
    "Camouflage": "overlapping irregular blotches in several muted shades cover {part}",
    "Graphic Print": "one large graphic motif is printed on the front of {part}",
    "Colorblock": "{part} is divided into large blocks of different solid colours",
    "Textured": "{part} has a fine hatched texture in a shade of its own colour and no contrasting print",
    "Chevron": "zigzag V-shaped bands repeat across {part}",
    "Paisley": "teardrop-shaped paisley motifs repeat across {part}",
}
_SLEEVES = {
    "Sleeveless": "there are no sleeves, only armholes at the shoulders",
    "Short Sleeve": "the sleeves end well above the elbow",
    "Three-Quarter Sleeve": "the sleeves end between the elbow and the wrist",
    "Full Sleeve": "the sleeves reach all the way to the wrist",
    "Long Sleeve": "the sleeves reach all the way to the wrist",
    "Roll-Up Sleeve": "the sleeves are folded up into a thick cuff band near the elbow",
}
_NECKS = {
    "Round Neck": "the neckline is a rounded opening with a trim",
    "V-Neck": "the neckline dips to a point in a V shape",
    "Square Neck": "the neckline is cut straight across with square corners",
    "Boat Neck": "the neckline is a wide, shallow opening running towards the shoulders",
    "Mandarin Collar": "a short stand-up band collar without points sits at the neck",
    "Polo Collar": "a folded collar with a short buttoned placket sits at the neck",
    "Henley": "a round neck opens into a short placket with a few buttons",
    "Spread Collar": "the collar points are angled wide apart",
    "Button-Down Collar": "small buttons fasten the collar points to the shirt",
    "Club Collar": "the collar points are rounded instead of sharp",
}
_EVIDENCE: dict[object, dict[str, str]] = {
    "sleeve_length": _SLEEVES,
    "neck_type": _NECKS,
    "collar": _NECKS,
    ("kurta", "length"): {
        "Hip Length": "the hem stops around the hips",
        "Knee Length": "the hem falls to around the knee, well below the hips",
        "Calf Length": "the hem reaches down to mid-calf, making it a long garment",
    },
    "detail_placement": {
        "Yoke": "the embroidery sits in a band across the chest and shoulders",
        "Hem": "the embroidery runs in a band along the bottom hem",
        "Sleeves": "the embroidery is placed on the ends of the sleeves",
        "All Over": "small embroidered motifs are spread over the whole garment",
        "Placket": "the embroidery runs down the front opening below the neck",
    },
    "bottom_type": {
        "Palazzo": "the bottom has very wide, straight legs",
        "Churidar": "the bottom has slim legs gathered into ruched folds above the ankle",
        "Salwar": "the bottom is baggy with a low crotch and narrows into cuffs at the ankle",
        "Sharara": "the legs are fitted down to the knee and then flare out widely",
        "Skirt": "the bottom is a single flared A-line skirt rather than two legs",
    },
    "dupatta": {
        "With Dupatta": "a long scarf with fringed ends lies diagonally across the top",
        "Without Dupatta": "only the top and the bottom are shown, with no scarf",
    },
    "heel_type": {
        "Flat": "the sole is flat with no raised heel",
        "Block Heel": "the heel is a thick rectangular block",
        "Wedge": "the sole rises into a solid wedge under the heel with no gap under the arch",
        "Stiletto": "the heel is tall and thin, tapering to a point",
        "Platform": "the whole sole is thick and raised, front and back",
    },
    ("sandal", "closure"): {
        "Buckle": "an ankle strap fastens with a metal buckle",
        "Velcro": "the ankle strap closes with a rectangular hook-and-loop patch",
        "Lace-Up": "laces criss-cross up around the ankle",
        "Slip-On": "there is no ankle strap or fastening, so the foot slips in",
    },
    ("shoe", "closure"): {
        "Lace-Up": "laces criss-cross through eyelets along the instep",
        "Slip-On": "there are no laces, only an elastic gusset and a pull tab",
        "Velcro": "hook-and-loop straps cross the instep",
    },
    "number_of_straps": {
        "1": "a single strap crosses the front of the foot",
        "2": "two separate straps cross the front of the foot",
        "3": "three separate straps cross the front of the foot",
    },
    "ankle_height": {
        "Low Top": "the collar sits below the ankle",
        "Mid Top": "the collar rises to around the ankle",
        "High Top": "the shaft rises well above the ankle",
    },
    "toe_shape": {
        "Round": "the toe is rounded and domed",
        "Pointed": "the toe narrows to a long point",
        "Square": "the toe ends in a flat, squared-off front",
    },
    ("slipper_flip_flop", "strap_type"): {
        "Thong": "a Y-shaped strap runs from a toe post between the toes to both sides",
        "Slide": "one wide band crosses the top of the foot",
        "Cross Strap": "two straps cross each other in an X over the foot",
        "Double Band": "two parallel bands cross the top of the foot",
    },
    ("watch", "strap_type"): {
        "Leather": "the strap has stitched edges and punched holes",
        "Metal": "the bracelet is made of linked metal segments",
        "Silicone": "the strap is smooth and rounded with no stitching, held by a keeper loop",
        "Mesh": "the strap is a fine woven metal mesh",
    },
    "fit": {
        "Slim Fit": "the legs are narrow from thigh to hem",
        "Regular Fit": "the legs are straight with a moderate width",
        "Wide Leg": "the legs widen towards a broad hem",
        "Tapered": "the legs are roomy at the thigh and narrow sharply towards the ankle",
    },
    ("trouser", "length"): {
        "Full Length": "the legs reach all the way down",
        "Ankle Length": "the legs stop a little above the ankle",
        "Three-Quarter": "the legs end around mid-calf, well above the ankle",
    },
    "pockets": {
        "No Pocket": "the chest has no pocket",
        "Single Pocket": "there is one pocket on the chest",
        "Double Pocket": "there are two pockets, one on each side of the chest",
    },
    "type": {
        "Hard Body": "the shell is rigid and moulded, with raised ribs and corner guards",
        "Soft Body": "the body is fabric with visible stitching and a zipped front pocket",
    },
    "locking_mechanism": {
        "Number Lock": "the lock on the front has three number wheels",
        "Key Lock": "the lock on the front is a round keyhole",
        "TSA Lock": "the lock has number wheels next to a red diamond TSA mark",
    },
    "number_of_wheels": {
        "2": "the suitcase stands on two wheels visible at the base",
        "4": "the suitcase stands on four spinner wheels visible at the base",
        "8": "the suitcase stands on eight wheels, four double-wheel sets, visible at the base",
    },
    "border_width": {
        "Thin": "the border along the hem and the pallu is a narrow strip",
        "Medium": "the border along the hem and the pallu is of moderate width",
        "Broad": "the border is a wide band along the hem and the pallu",
    },
    "dial_shape": {
        "Round": "the dial is a circle",
        "Square": "the dial is square, as wide as it is tall",
        "Rectangle": "the dial is a rectangle, taller than it is wide",
        "Oval": "the dial is an ellipse, taller than it is wide",
    },
    "display_type": {
        "Analog": "the time is shown only by hands and hour markers",
        "Digital": "the time is shown by digits on an LCD, with no hands",
        "Analog-Digital": "the dial has hands and also a small digital window",
    },
}
_TEMPLATES = (
    "{E}, so the {label} is {value}.",
    "Looking at the images, {e}. That matches the option {value}.",
    "In the product photos {e}; among the options this is best described as {value}.",
    "{E}. Therefore the most suitable {label} for this {vd} is {value}.",
    "Across the views {e}, which indicates {label}: {value}.",
)


def _part_name(vertical: Vertical, attr: Attribute) -> str:
    """The part of the product a colour or pattern attribute describes ("the straps and sole")."""
    return _PART.get((vertical.name, attr.name), _PART.get(attr.name, "the {vd}")).format(vd=vertical.display_name)


def part_described(vertical: Vertical, attr: Attribute) -> tuple[str, str] | None:
    """For a colour or pattern attribute: ``("colour" | "pattern", the part it describes)``, e.g. ``("colour",
    "the straps and sole")``; None for any other attribute."""
    kind = "colour" if attr.name in _COLOUR_ATTRS else "pattern" if attr.name in _PATTERN_ATTRS else None
    return None if kind is None else (kind, _part_name(vertical, attr))


def evidence_text(vertical: Vertical, attr: Attribute, value: str, rng: random.Random) -> str:
    """What the images show that makes ``value`` right, as a clause ("the straps and sole is mostly red")."""
    vd = vertical.display_name
    part = _part_name(vertical, attr)
    if attr.name in _COLOUR_ATTRS:
        return rng.choice(_COLOUR_PHRASES).format(part=part, c=value.lower())
    if attr.name in _PATTERN_ATTRS and value in _PATTERN_PHRASES:
        return _PATTERN_PHRASES[value].format(part=part)
    table = _EVIDENCE.get((vertical.name, attr.name)) or _EVIDENCE.get(attr.name) or {}
    if value in table:
        return table[value].format(vd=vd)
    return f"the {attr.name.replace('_', ' ')} visible in the images matches {value}"


# The teacher's phrasings that do not echo the task's question ("the most suitable ... for this ..."): what
# pretraining may use when its reasoning names the answer (``pretrain.reasoning: explained``).
GENERIC_TEMPLATES = tuple(t for t in _TEMPLATES if "most suitable" not in t)


def sentence(clause: str) -> str:
    """A clause ("the heel is a thick block") as a sentence ("The heel is a thick block.")."""
    return clause[0].upper() + clause[1:] + "."


def explained(vertical: Vertical, attr: Attribute, value: str, evidence: str, rng: random.Random,
              templates: tuple[str, ...] = _TEMPLATES) -> str:
    """The visual ``evidence`` (a clause) and the answer it points to, in one of ``templates``."""
    return rng.choice(templates).format(e=evidence, E=evidence[0].upper() + evidence[1:],
                                        label=attr.name.replace("_", " "), value=value, vd=vertical.display_name)


TEACHERS = ("explained", "evidence", "views", "descriptors")


def descriptor_evidence(vertical: Vertical, attr: Attribute, value: str, rng: random.Random) -> str | None:
    """What the descriptors teacher sees, as a clause: one of a colour's shades ("the strap is cobalt") or of a print's
    motifs ("the top shows daisies"), drawn with ``rng``; None for any other attribute or value."""
    if attr.name in _COLOUR_ATTRS and value in SHADES:
        return f"{_part_name(vertical, attr)} is {rng.choice(SHADES[value])}"
    if attr.name in _PATTERN_ATTRS and value in PRINTS:
        return f"{_part_name(vertical, attr)} shows {rng.choice(PRINTS[value])}"
    return None


def view_phrase(k: int) -> str:
    """How reasoning names view ``k`` (0-based) of a listing: "picture 2", as Qwen2.5-VL's chat template labels the
    images when asked to (``add_vision_id``: "Picture 2: <image>")."""
    if k < 0:
        raise ValueError(f"a view's place is 0 or more, not {k}")
    return f"picture {k + 1}"


def view_reasoning(k: int | None, evidence: str, attr: Attribute, value: str | None) -> str:
    """Evidence read in view ``k`` ("In picture 2 the strap is mostly red"; None: "Across the views ..."), then, given
    ``value``, the answer it points to (", so the strap color is Red."): the views teacher's reasoning, and a view
    question's in pretraining."""
    where = f"In {view_phrase(k)}" if k is not None else "Across the views"
    return f"{where} {evidence}" + (f", so the {attr.name.replace('_', ' ')} is {value}." if value else ".")


def reasoning_text(vertical: Vertical, attr: Attribute, value: str, rng: random.Random,
                   teacher: str = "explained", shown: list[str] | None = None) -> str:
    """A short teacher-style rationale for ``value``. ``teacher`` "explained" (the catalog's teacher): the visual
    evidence, then the answer in one of the teacher's phrasings; "evidence": the evidence alone, as a sentence (a
    diagnostic: the same draws, so a catalog differs from the explained one in its seed reasoning only); "views": the
    evidence of one view that shows ``value`` ("In picture 3 the strap is mostly red, so the strap color is Red."), as
    a teacher that looks at one photo at a time names it; "descriptors": as "explained", but a colour's evidence names
    one of its shades (:data:`SHADES`: "the strap is cobalt", then Blue), a print one of its motifs (:data:`PRINTS`:
    "the top shows daisies", then Floral). ``shown``: the value each view shows (the
    views teacher needs it); when no view shows ``value``, the evidence is read across the views."""
    if teacher == "views":
        if shown is None:
            raise ValueError("the views teacher needs the value each view shows")
        e = evidence_text(vertical, attr, value, rng)
        agreeing = [k for k, v in enumerate(shown) if v == value]
        return view_reasoning(rng.choice(agreeing) if agreeing else None, e, attr, value)
    if teacher == "descriptors" and (d := descriptor_evidence(vertical, attr, value, rng)) is not None:
        return explained(vertical, attr, value, d, rng)
    e = evidence_text(vertical, attr, value, rng)
    text = explained(vertical, attr, value, e, rng)
    if teacher in ("explained", "descriptors"):
        return text
    if teacher == "evidence":
        return sentence(e)
    raise ValueError(f"teacher: {teacher!r} is not one of {TEACHERS}")


def view_labels(vertical: Vertical, labels: dict[str, str], n_views: int, noise: float,
                rng: random.Random) -> list[dict[str, str]]:
    """What each of ``n_views`` views shows: ``labels``, except that each visible attribute of each view shows, with
    probability ``noise``, another of its values drawn at random (that view misleads on it). Views mislead
    independently, so the value most views show is more often the true one than any one view's."""
    views = []
    for _ in range(n_views):
        shown = dict(labels)
        for a in vertical.inferable_attributes():
            if a.name in shown and len(a.values) > 1 and rng.random() < noise:
                shown[a.name] = rng.choice([v for v in a.values if v != labels[a.name]])
        views.append(shown)
    return views


# --------------------------------------------------------------------------------------------------------------
# Writing.

def _atomic_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        # Fixed writer options (and no timestamps in Parquet metadata) keep the bytes reproducible.
        pq.write_table(table, tmp, compression="snappy", use_dictionary=True, write_statistics=True,
                       version="2.6", data_page_version="1.0", row_group_size=max(1, table.num_rows))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _pairs(d: dict[str, str] | None):
    return None if d is None else list(d.items())


def _make_listing(out: Path, vertical: Vertical, split: str, index: int, listing_id: str, *, seed: int,
                  max_views: int, difficulty: float, image_size: int, min_views: int = 1,
                  view_noise: float = 0.0) -> tuple[dict[str, str], list[str], list[dict[str, str]]]:
    """Sample the listing's labels, render and save its views; return (all labels, image URIs, what each view
    shows)."""
    labels = sample_labels(vertical, listing_rng(seed, split, vertical.name, index, "labels"))
    rng = listing_rng(seed, split, vertical.name, index, "images")
    n_views = rng.randint(min_views, max_views)
    shown = None
    if view_noise > 0:
        views_rng = listing_rng(seed, split, vertical.name, index, "views")
        shown = view_labels(vertical, labels, n_views, view_noise, views_rng)
    views = render_listing(vertical, labels, rng, n_views=n_views, difficulty=difficulty, size=image_size,
                           view_labels=shown)
    uris = []
    for k, img in enumerate(views):
        rel = f"images/{listing_id}_{k}.jpg"
        img.save(out / rel, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=0)
        uris.append(rel)
    return labels, uris, shown or [labels] * n_views


def write_synthetic_catalog(
    out_dir: str | os.PathLike,
    *,
    taxonomy: Taxonomy,
    listings: int,
    seed: int,
    seed_per_vertical: int = 10,
    test_per_vertical: int = 10,
    max_views: int = 5,
    difficulty: float = 0.3,
    label_noise: float = 0.0,
    image_size: int = 256,
    teacher: str = "explained",
    min_views: int = 1,
    view_noise: float = 0.0,
) -> dict:
    """Render a synthetic catalog into ``out_dir`` (see the module docstring); return what ``catalog.json`` holds.
    ``teacher``: how the seed split's reasoning reads (:func:`reasoning_text`). A listing has ``min_views`` to
    ``max_views`` views; ``view_noise``: the chance that a view shows one attribute otherwise (:func:`view_labels`)."""
    for name, val, ok in (
        ("listings", listings, listings >= 0),
        ("seed_per_vertical", seed_per_vertical, seed_per_vertical >= 0),
        ("test_per_vertical", test_per_vertical, test_per_vertical >= 0),
        ("max_views", max_views, max_views >= 1),
        ("min_views", min_views, 1 <= min_views <= max_views),
        ("view_noise", view_noise, 0.0 <= view_noise < 1.0),
        ("difficulty", difficulty, 0.0 <= difficulty <= 1.0),
        ("label_noise", label_noise, 0.0 <= label_noise <= 1.0),
        ("image_size", image_size, image_size >= 32),
        ("teacher", teacher, teacher in TEACHERS),
    ):
        if not ok:
            raise ValueError(f"{name}: invalid value {val!r}")
    verticals = list(taxonomy.verticals.values())
    for v in verticals:
        check_renderable(v)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    meta = out / "catalog.json"
    if meta.exists():
        meta.unlink()  # incomplete until rewritten at the end
    written: set[str] = set()
    counts: dict[str, dict] = {}
    views = {"min_views": min_views, "view_noise": view_noise}
    shown_on: dict[str, list[dict[str, str]]] = {}  # seed listing -> what each of its views shows

    def non_inferable(v: Vertical, labels: dict[str, str]) -> list[tuple[str, str]] | None:
        pairs = [(a.name, labels[a.name]) for a in v.attributes.values() if not a.inferable]
        return pairs or None

    def visible(v: Vertical, labels: dict[str, str]) -> dict[str, str]:
        return {a.name: labels[a.name] for a in v.inferable_attributes()}

    def count(split: str, rows: list[dict]) -> None:
        per_v = {v.name: 0 for v in verticals}
        for r in rows:
            per_v[r["vertical"]] += 1
        counts[split] = {"listings": len(rows), "images": sum(len(r["image_uris"]) for r in rows),
                         "per_vertical": per_v}

    # labeled splits: seed and test, per vertical
    labeled: dict[str, list[dict]] = {}
    for split, per in (("seed", seed_per_vertical), ("test", test_per_vertical)):
        rows = []
        for v in verticals:
            for j in range(per):
                lid = f"{split}-{v.name}-{j:06d}"
                labels, uris, shown = _make_listing(out, v, split, j, lid, seed=seed, max_views=max_views,
                                                    difficulty=difficulty, image_size=image_size, **views)
                written.update(Path(u).name for u in uris)
                vis = visible(v, labels)
                reasoning = None
                if split == "seed":
                    rrng = listing_rng(seed, split, v.name, j, "reasoning")
                    shown_on[lid] = shown
                    reasoning = {a: reasoning_text(v, v.attributes[a], val, rrng, teacher, [s[a] for s in shown])
                                 for a, val in vis.items()}
                rows.append({"listing_id": lid, "vertical": v.name, "image_uris": uris, "image_bytes": None,
                             "seller_attributes": non_inferable(v, labels), "labels": vis, "reasoning": reasoning})
        labeled[split] = rows

    # label noise on the seed split: an exact fraction of its labels, each replaced by a wrong allowed value
    slots = [(i, a) for i, r in enumerate(labeled["seed"]) for a in r["labels"]]
    n_noisy = int(round(label_noise * len(slots)))
    noisy = []
    noise_rng = listing_rng(seed, "label_noise")
    for i, a in sorted(noise_rng.sample(slots, n_noisy)):
        row = labeled["seed"][i]
        v = taxonomy.vertical(row["vertical"])
        attr = v.attributes[a]
        true = row["labels"][a]
        wrong = noise_rng.choice([x for x in attr.values if x != true])
        row["labels"][a] = wrong
        row["reasoning"][a] = reasoning_text(v, attr, wrong, listing_rng(seed, "label_noise", row["listing_id"], a),
                                             teacher, [s[a] for s in shown_on[row["listing_id"]]])
        noisy.append({"listing_id": row["listing_id"], "attribute": a, "true": true, "given": wrong})

    for split in ("seed", "test"):
        rows = labeled[split]
        for r in rows:
            r["labels"] = _pairs(r["labels"])
            r["reasoning"] = _pairs(r["reasoning"])
        _atomic_parquet(pa.Table.from_pylist(rows, schema=LABELED_SCHEMA), out / split / "part-00000.parquet")
        count(split, rows)

    # the unlabeled pool, round-robin over the verticals, and its ground truth kept aside
    rows, truth = [], []
    for i in range(listings):
        v = verticals[i % len(verticals)]
        lid = f"unlabeled-{v.name}-{i:06d}"
        labels, uris, _ = _make_listing(out, v, "unlabeled", i, lid, seed=seed, max_views=max_views,
                                        difficulty=difficulty, image_size=image_size, **views)
        written.update(Path(u).name for u in uris)
        rows.append({"listing_id": lid, "vertical": v.name, "image_uris": uris, "image_bytes": None,
                     "seller_attributes": non_inferable(v, labels)})
        truth.append({"listing_id": lid, "vertical": v.name, "labels": list(labels.items())})
    _atomic_parquet(pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA), out / "unlabeled" / "part-00000.parquet")
    _atomic_parquet(pa.Table.from_pylist(truth, schema=TRUTH_SCHEMA), out / "truth" / "unlabeled.parquet")
    count("unlabeled", rows)

    # images of an earlier, larger catalog in the same directory would otherwise linger
    for f in (out / "images").iterdir():
        if _IMAGE_RE.match(f.name) and f.name not in written:
            f.unlink()

    summary = {
        "format_version": FORMAT_VERSION,
        "generator": "attrpipe.synth.catalog",
        "args": {
            "listings": listings, "seed": seed, "seed_per_vertical": seed_per_vertical,
            "test_per_vertical": test_per_vertical, "max_views": max_views, "difficulty": float(difficulty),
            "label_noise": float(label_noise), "image_size": image_size, "teacher": teacher,
            "min_views": min_views, "view_noise": float(view_noise),
        },
        "verticals": [v.name for v in verticals],
        "image_uris": "relative to the catalog root: the directory holding this catalog.json",
        "splits": {
            "seed": "seed/part-00000.parquet", "unlabeled": "unlabeled/part-00000.parquet",
            "test": "test/part-00000.parquet", "truth": "truth/unlabeled.parquet",
        },
        "counts": {**{s: counts[s] for s in SPLITS}, "noisy_labels": len(noisy), "seed_labels": len(slots)},
        "label_noise": {"rate": float(label_noise), "count": len(noisy), "labels": noisy},
        "truth_labels": "truth/unlabeled.parquet holds every attribute, inferable or not",
    }
    _atomic_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", meta)
    return summary
