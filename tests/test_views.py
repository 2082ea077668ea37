"""Views that disagree: a catalog whose views each show an attribute otherwise with some probability, the teacher that
names the one view its evidence comes from, and the pretraining questions that teach a model to read a photo named
by its place."""

import json
import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from attrpipe.config import load_config
from attrpipe.synth.catalog import listing_rng, reasoning_text, view_labels, view_phrase, write_synthetic_catalog
from attrpipe.synth.vqa import VIEW_PHOTOS, Offer, render_vqa, vqa_examples, vqa_records
from attrpipe.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
TAX = load_taxonomy(ROOT / "conf" / "taxonomy")


def test_view_labels_mislead_each_attribute_independently_at_the_rate_asked():
    v = TAX.vertical("sandal")
    labels = {a.name: a.values[0] for a in v.inferable_attributes()}
    assert view_labels(v, labels, 4, 0.0, random.Random(0)) == [labels] * 4
    rng = random.Random(1)
    shown = [s for _ in range(400) for s in view_labels(v, labels, 5, 0.3, rng)]
    for a in v.inferable_attributes():
        wrong = [s[a.name] for s in shown if s[a.name] != labels[a.name]]
        assert all(w in a.values for w in wrong)
        assert 0.26 < len(wrong) / len(shown) < 0.34, a.name  # 2,000 draws: 0.30 within about 3 standard errors
    assert view_labels(v, labels, 3, 0.5, random.Random(7)) == view_labels(v, labels, 3, 0.5, random.Random(7))


def test_the_views_teacher_names_a_view_that_shows_the_label():
    v = TAX.vertical("watch")
    attr = v.attributes["strap_color"]
    shown = ["Black", "Brown", "Brown", "Black", "Brown"]
    for seed in range(30):
        text = reasoning_text(v, attr, "Brown", random.Random(seed), "views", shown)
        place = next(k for k in range(5) if text.startswith(f"In {view_phrase(k)} "))
        assert shown[place] == "Brown" and text.endswith("so the strap color is Brown.")
    assert reasoning_text(v, attr, "Silver", random.Random(0), "views", shown).startswith("Across the views ")
    with pytest.raises(ValueError, match="needs the value each view shows"):
        reasoning_text(v, attr, "Brown", random.Random(0), "views")
    assert view_phrase(0) == "picture 1" and view_phrase(4) == "picture 5"  # as the chat template labels them
    with pytest.raises(ValueError):
        view_phrase(-1)


def test_a_catalog_with_views_that_disagree(tmp_path):
    args = dict(listings=6, seed=2, seed_per_vertical=2, test_per_vertical=1, max_views=4, image_size=48)
    summary = write_synthetic_catalog(tmp_path / "v", taxonomy=TAX, **args, min_views=3, view_noise=0.4,
                                      teacher="views")
    assert summary["args"]["min_views"] == 3 and summary["args"]["view_noise"] == 0.4
    seed = pq.read_table(tmp_path / "v" / "seed").to_pylist()
    places = Counter()
    for row in seed:
        assert 3 <= len(row["image_uris"]) <= 4
        v = TAX.vertical(row["vertical"])
        j = int(row["listing_id"].rsplit("-", 1)[1])
        # what each view shows: the same draws the writer made
        truth = dict(row["labels"])
        shown = view_labels(v, {**truth}, len(row["image_uris"]), 0.4,
                            listing_rng(2, "seed", v.name, j, "views"))
        for attr, why in row["reasoning"]:
            assert why.endswith(f"so the {attr.replace('_', ' ')} is {truth[attr]}.")
            if why.startswith("Across the views "):
                assert all(s[attr] != truth[attr] for s in shown)
                continue
            k = next(k for k in range(len(shown)) if why.startswith(f"In {view_phrase(k)} "))
            assert shown[k][attr] == truth[attr]
            places[k] += 1
    assert len(places) >= 3  # the named view varies
    # some view shows an attribute otherwise, and the images are drawn from what the views show
    plain = write_synthetic_catalog(tmp_path / "p", taxonomy=TAX, **args, min_views=3)
    assert plain["args"]["view_noise"] == 0.0
    a = {p.name: p.read_bytes() for p in (tmp_path / "v" / "images").iterdir()}
    b = {p.name: p.read_bytes() for p in (tmp_path / "p" / "images").iterdir()}
    assert a.keys() == b.keys() and sum(a[f] != b[f] for f in a) > 0
    with pytest.raises(ValueError, match="min_views"):
        write_synthetic_catalog(tmp_path / "x", taxonomy=TAX, **{**args, "max_views": 2}, min_views=3)
    with pytest.raises(ValueError, match="view_noise"):
        write_synthetic_catalog(tmp_path / "x", taxonomy=TAX, **args, view_noise=1.0)


@pytest.mark.parametrize("seed", range(6))
def test_a_view_question_asks_about_the_photo_it_names(seed):
    ex = render_vqa(random.Random(seed), 48, "view", taxonomy=TAX, offer=Offer(values=0, distractors=0.5))
    n = len(ex.images)
    assert VIEW_PHOTOS[0] <= n <= VIEW_PHOTOS[1] and all(im.size == (48, 48) for im in ex.images)
    place = next(k for k in range(n) if f"{view_phrase(k)}?" in ex.question or f"{view_phrase(k)}:" in ex.question
                 or f"{view_phrase(k)}." in ex.question)
    assert ex.reasoning.startswith(f"In {view_phrase(place)} ") and ex.answer in ex.options
    assert "most suitable value" not in ex.user_text
    record = next(vqa_records(iter([ex])))
    assert len(record["image_bytes"]) == n
    explained = render_vqa(random.Random(seed), 48, "view", taxonomy=TAX, reasoning="explained")
    assert explained.reasoning.endswith(f" is {explained.answer}.")


def test_a_view_questions_other_photos_show_other_values():
    """The answer cannot be read off any photo but the one named: no other photo shows it."""
    from attrpipe.synth.vqa import view_photos

    v = TAX.vertical("kurta")
    places = Counter()
    for seed in range(40):
        attribute = v.attributes["sleeve_length"]
        photos, target = view_photos(random.Random(seed), v, attribute)
        answer = photos[target][attribute.name]
        assert VIEW_PHOTOS[0] <= len(photos) <= VIEW_PHOTOS[1]
        assert [k for k, p in enumerate(photos) if p[attribute.name] == answer] == [target]
        assert all(p[attribute.name] in attribute.values for p in photos)
        places[target] += 1
    assert len(places) == VIEW_PHOTOS[1]  # every place is asked about
    kinds = [x.kind for x in vqa_examples(6, seed=0, size=32, taxonomy=TAX, schedule=["view", "part", "view"])]
    assert kinds == ["view", "part", "view", "view", "part", "view"]


def test_continued_pretraining_is_keyed_on_the_weights_it_starts_from(tmp_path):
    from attrpipe.synth.pretrain import pretrain_recipe, recipe_hash

    start = tmp_path / "start"
    start.mkdir()
    (start / "model.safetensors").write_bytes(b"one")
    cfg = lambda: load_config("conf/tiny_cpu.yaml", [f"pretrain.output={tmp_path / 'pt'}",  # noqa: E731
                                                     f"pretrain.start_from={start}"])
    first = pretrain_recipe(cfg())
    assert first["start_weights"] and first["pretrain"]["start_from"] == str(start)
    (start / "model.safetensors").write_bytes(b"two")
    assert recipe_hash(pretrain_recipe(cfg())) != recipe_hash(first)
    plain = pretrain_recipe(load_config("conf/tiny_cpu.yaml", [f"pretrain.output={tmp_path / 'pt'}"]))
    assert "start_from" not in plain["pretrain"] and "start_weights" not in plain  # older hashes kept
    with pytest.raises(FileNotFoundError, match="start_from"):
        pretrain_recipe(load_config("conf/tiny_cpu.yaml", [f"pretrain.start_from={tmp_path / 'none'}"]))


def test_picture_labels_turn_on_the_templates_own_vision_ids(tmp_path):
    from attrpipe.synth.pretrain import label_pictures

    template = (ROOT / "models" / "miniature" / "chat_template.jinja").read_text()
    (tmp_path / "chat_template.jinja").write_text(template)
    label_pictures(tmp_path)
    label_pictures(tmp_path)  # once only
    patched = (tmp_path / "chat_template.jinja").read_text()
    assert patched.endswith(template) and patched.count("is not defined") == 1
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    with pytest.raises(ValueError, match="add_vision_id"):
        label_pictures(tmp_path)
