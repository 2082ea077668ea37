"""The renderer's output, pinned: a fixed sample of product listings, every drawable value, the vision stage's product
views and the pretraining questions (images and text), hashed, must match ``tests/data/render_golden.json``.

The sample goes through the entry points the catalog, the vision stage and the pretraining questions use, so a
refactoring of the renderer that changes one pixel of them fails here. The hashes hold for one Pillow and numpy (see
``pyproject.toml``); after an intended change of the images, or a new Pillow, rewrite the fixture with
``python tests/test_render_golden.py`` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Iterator

from PIL import Image

from attrpipe.synth.catalog import listing_rng
from attrpipe.synth.render.listing import render_listing
from attrpipe.synth.render.registry import renderable_attributes, sample_labels
from attrpipe.synth.vision import product_view
from attrpipe.synth.vqa import vqa_examples
from attrpipe.taxonomy import Taxonomy, load_taxonomy

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "render_golden.json"


def _digest(images: list[Image.Image], text: object = None) -> str:
    """sha256 of the images' pixels (mode and size included) and of ``text`` as JSON."""
    h = hashlib.sha256(json.dumps(text, sort_keys=True).encode())
    for img in images:
        h.update(f"{img.mode} {img.size}".encode())
        h.update(img.tobytes())
    return h.hexdigest()


def golden_sample(taxonomy: Taxonomy) -> Iterator[tuple[str, str]]:
    """``(name, sha256)`` of everything the fixture pins, in a fixed order."""
    for name in sorted(taxonomy.verticals):
        v = taxonomy.verticals[name]
        yield f"drawn/{name}", _digest([], {a: list(vals) for a, vals in renderable_attributes(name).items()})
        # listings as the catalog makes them: labels and views from their own streams, several views, two levels
        for i, difficulty in enumerate((0.0, 0.3, 0.6, 1.0)):
            labels = sample_labels(v, listing_rng(0, "golden", name, i, "labels"))
            rng = listing_rng(0, "golden", name, i, "images")
            views = render_listing(v, labels, rng, n_views=rng.randint(1, 3), difficulty=difficulty,
                                   size=256 if i == 1 else 128)
            yield f"listing/{name}/{i}", _digest(views, labels)
        # every drawable value of every visible attribute, on one product, a clean hero shot
        base = sample_labels(v, random.Random(f"golden:{name}"))
        for a in v.inferable_attributes():
            for value in a.values:
                img = render_listing(v, {**base, a.name: value}, random.Random(f"golden:{name}:{a.name}"), n_views=1,
                                     difficulty=0.2, size=96)[0]
                yield f"value/{name}/{a.name}/{value}", _digest([img])
    for i in range(12):  # the vision stage's product views
        vertical, visible, img = product_view(3, i, taxonomy, 64)
        yield f"vision/{i}", _digest([img], [vertical, visible])
    for i, ex in enumerate(vqa_examples(42, seed=5, size=64, taxonomy=taxonomy)):  # every kind, three times
        yield f"vqa/{i}/{ex.kind}", _digest([ex.image], [ex.question, list(ex.options), ex.answer, ex.reasoning])


def _taxonomy() -> Taxonomy:
    return load_taxonomy(REPO / "conf" / "taxonomy")


def test_the_renderer_draws_the_pinned_images():
    want = json.loads(FIXTURE.read_text())
    got = dict(golden_sample(_taxonomy()))
    assert list(got) == list(want), "the sample changed: rewrite the fixture (see the module docstring)"
    changed = [k for k in want if got[k] != want[k]]
    assert not changed, f"{len(changed)} of {len(want)} renders changed, e.g. {changed[:5]}"


if __name__ == "__main__":
    sample = dict(golden_sample(_taxonomy()))
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(sample, indent=0) + "\n")
    print(f"wrote {len(sample)} hashes to {FIXTURE.relative_to(REPO)}", file=sys.stderr)
