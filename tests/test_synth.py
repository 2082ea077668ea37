"""The paper's taxonomy, the procedural renderer and the synthetic catalog writer."""

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from attrpipe.schemas import CATALOG_SCHEMA, LABELED_SCHEMA
from attrpipe.synth.catalog import TRUTH_SCHEMA, write_synthetic_catalog
from attrpipe.synth.render.colours import PATTERNS
from attrpipe.synth.render.listing import render_listing
from attrpipe.synth.render.registry import check_renderable, renderable_attributes, sample_labels
from attrpipe.synth.render.spec import RenderError
from attrpipe.taxonomy import Vertical, load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
VERTICALS = {
    "sandal", "ethnic_set", "kurta", "shoe", "slipper_flip_flop", "trouser", "t_shirt", "top", "shirt", "suitcase",
    "sari", "watch",
}


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy(ROOT / "conf" / "taxonomy")


# --------------------------------------------------------------------------------------------------------------
# taxonomy


def test_taxonomy_has_the_papers_twelve_verticals(tax):
    assert set(tax.verticals) == VERTICALS
    for v in tax.verticals.values():
        inferable = v.inferable_attributes()
        assert 3 <= len(inferable) <= 5, v.name
        assert len(inferable) < len(v.attributes), f"{v.name} needs a non-inferable attribute"
        for a in v.attributes.values():
            assert 2 <= len(a.values) <= 14, (v.name, a.name)
            assert a.description.strip().endswith("."), (v.name, a.name)
        check_renderable(v)  # every inferable attribute and value is really drawn


def test_required_attributes(tax):
    suitcase = tax.vertical("suitcase").attributes
    assert len(suitcase["pattern"].values) == 14 and set(suitcase["pattern"].values) <= set(PATTERNS)
    assert {"type", "locking_mechanism", "number_of_wheels"} <= set(suitcase)
    assert suitcase["number_of_wheels"].values == ("2", "4", "8")
    assert "detail_placement" in tax.vertical("kurta").attributes
    assert tax.vertical("ethnic_set").display_name == "ethnic set"
    assert tax.vertical("slipper_flip_flop").display_name == "slipper flip-flop"
    assert tax.vertical("t_shirt").display_name == "t-shirt"


def test_check_renderable_refuses_what_is_not_drawn(tax):
    watch = tax.vertical("watch")
    extra = dict(watch.attributes)
    extra["dial_shape"] = type(watch.attributes["dial_shape"])(
        "dial_shape", "Shape.", ("Round", "Heart"), True)
    with pytest.raises(RenderError, match=r"dial_shape: cannot draw \['Heart'\]"):
        check_renderable(Vertical("watch", "watch", extra))
    with pytest.raises(RenderError, match="no renderer for vertical 'spaceship'"):
        renderable_attributes("spaceship")


# --------------------------------------------------------------------------------------------------------------
# rendering


def test_sample_labels_covers_every_attribute_with_allowed_values(tax):
    for v in tax.verticals.values():
        for i in range(20):
            labels = sample_labels(v, random.Random(i))
            assert set(labels) == set(v.attributes)
            assert all(labels[a] in v.attributes[a].values for a in labels)
        assert sample_labels(v, random.Random(3)) == sample_labels(v, random.Random(3))
    kurta = tax.vertical("kurta")
    for i in range(200):  # combinations the renderer cannot show are resampled
        lab = sample_labels(kurta, random.Random(i))
        assert not (lab["detail_placement"] == "Sleeves" and lab["sleeve_length"] == "Sleeveless")


def _render(v, labels, seed=0, **kw):
    kw.setdefault("n_views", 1)
    kw.setdefault("difficulty", 0.0)
    kw.setdefault("size", 96)
    return render_listing(v, labels, random.Random(seed), **kw)


def test_rendering_is_deterministic_and_sized(tax):
    v = tax.vertical("suitcase")
    labels = sample_labels(v, random.Random(1))
    a = _render(v, labels, seed=5, n_views=3, difficulty=0.7, size=128)
    b = _render(v, labels, seed=5, n_views=3, difficulty=0.7, size=128)
    assert len(a) == 3 and all(im.size == (128, 128) and im.mode == "RGB" for im in a)
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]
    assert a[1].tobytes() != a[2].tobytes()  # views differ
    c = _render(v, labels, seed=6, n_views=3, difficulty=0.7, size=128)
    assert [im.tobytes() for im in a] != [im.tobytes() for im in c]
    with pytest.raises(ValueError):
        _render(v, labels, n_views=0)


def test_visible_labels_change_pixels_and_invisible_ones_do_not(tax):
    """For every vertical: changing any inferable attribute changes the image, a non-inferable one never does."""
    for v in tax.verticals.values():
        base = sample_labels(v, random.Random(11))
        ref = _render(v, base, seed=2, difficulty=0.3)[0].tobytes()
        for a in v.attributes.values():
            for other in (x for x in a.values if x != base[a.name]):
                img = _render(v, {**base, a.name: other}, seed=2, difficulty=0.3)[0].tobytes()
                if a.inferable:
                    assert img != ref, f"{v.name}.{a.name}: {base[a.name]!r} and {other!r} render the same"
                else:
                    assert img == ref, f"{v.name}.{a.name} is not inferable but changes the image"
                if a.inferable:
                    break  # one alternative per visible attribute keeps this fast


def test_colour_change_is_a_real_colour_change(tax):
    """A clean red suitcase is mostly red; the same suitcase in blue is mostly blue."""
    v = tax.vertical("suitcase")
    labels = {**sample_labels(v, random.Random(0)), "pattern": "Solid"}

    def mean_rgb(colour):
        img = _render(v, {**labels, "color": colour}, size=64)[0]
        px = [img.getpixel((x, y)) for x in range(24, 40) for y in range(30, 46)]  # the shell's centre
        return [sum(p[k] for p in px) / len(px) for k in range(3)]

    red, blue = mean_rgb("Red"), mean_rgb("Blue")
    assert red[0] > 150 and red[2] < 90
    assert blue[2] > 150 and blue[0] < 90


def test_missing_or_undrawable_visible_label_is_an_error(tax):
    v = tax.vertical("watch")
    labels = sample_labels(v, random.Random(0))
    with pytest.raises(RenderError, match="lack the visible attribute 'dial_shape'"):
        _render(v, {k: x for k, x in labels.items() if k != "dial_shape"})
    with pytest.raises(RenderError, match="cannot draw value 'Heart'"):
        _render(v, {**labels, "dial_shape": "Heart"})
    # non-inferable labels may be absent: they are never drawn
    _render(v, {k: x for k, x in labels.items() if k != "water_resistance"})


# --------------------------------------------------------------------------------------------------------------
# the catalog

ARGS = dict(listings=24, seed=7, seed_per_vertical=2, test_per_vertical=2, max_views=5, difficulty=0.3)


@pytest.fixture(scope="module")
def catalog(tax, tmp_path_factory):
    out = tmp_path_factory.mktemp("catalog")
    summary = write_synthetic_catalog(out, taxonomy=tax, **ARGS)
    return out, summary


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_catalog_layout_schemas_and_counts(catalog, tax):
    out, summary = catalog
    seed = pq.read_table(out / "seed" / "part-00000.parquet")
    test = pq.read_table(out / "test" / "part-00000.parquet")
    unl = pq.read_table(out / "unlabeled" / "part-00000.parquet")
    truth = pq.read_table(out / "truth" / "unlabeled.parquet")
    assert seed.schema.equals(LABELED_SCHEMA) and test.schema.equals(LABELED_SCHEMA)
    assert unl.schema.equals(CATALOG_SCHEMA) and truth.schema.equals(TRUTH_SCHEMA)
    assert (seed.num_rows, test.num_rows, unl.num_rows, truth.num_rows) == (24, 24, 24, 24)
    for t in (seed, test, unl):
        per_vertical = {}
        for v in t.column("vertical").to_pylist():
            per_vertical[v] = per_vertical.get(v, 0) + 1
        assert per_vertical == {v: 2 for v in VERTICALS}
    ids = seed.column("listing_id").to_pylist() + test.column("listing_id").to_pylist() + \
        unl.column("listing_id").to_pylist()
    assert len(set(ids)) == len(ids) == 72
    assert truth.column("listing_id").to_pylist() == unl.column("listing_id").to_pylist()

    meta = json.loads((out / "catalog.json").read_text())
    assert meta == summary
    assert meta["format_version"] == 1 and "catalog root" in meta["image_uris"]
    assert {k: meta["args"][k] for k in ARGS} == ARGS and meta["args"]["label_noise"] == 0.0
    assert meta["counts"]["seed"]["listings"] == 24 and meta["counts"]["unlabeled"]["per_vertical"]["watch"] == 2
    assert meta["counts"]["noisy_labels"] == 0


def test_catalog_labels_and_reasoning(catalog, tax):
    out, _ = catalog
    for split in ("seed", "test"):
        for row in pq.read_table(out / split / "part-00000.parquet").to_pylist():
            v = tax.vertical(row["vertical"])
            labels = dict(row["labels"])
            assert set(labels) == {a.name for a in v.inferable_attributes()}
            assert all(labels[a] in v.attributes[a].values for a in labels)
            sellers = dict(row["seller_attributes"])
            assert set(sellers) == {a.name for a in v.attributes.values() if not a.inferable}
            if split == "seed":
                reasoning = dict(row["reasoning"])
                assert set(reasoning) == set(labels)
                for a, text in reasoning.items():
                    assert labels[a] in text and len(text) > 30
            else:
                assert row["reasoning"] is None
    for row in pq.read_table(out / "truth" / "unlabeled.parquet").to_pylist():
        v = tax.vertical(row["vertical"])
        labels = dict(row["labels"])
        assert set(labels) == set(v.attributes)  # the truth holds non-inferable attributes too
        assert all(labels[a] in v.attributes[a].values for a in labels)


def test_catalog_images_exist_and_open(catalog):
    out, summary = catalog
    n_images = 0
    for split in ("seed", "test", "unlabeled"):
        for row in pq.read_table(out / split / "part-00000.parquet").to_pylist():
            uris = row["image_uris"]
            assert 1 <= len(uris) <= 5
            for k, uri in enumerate(uris):
                assert uri == f"images/{row['listing_id']}_{k}.jpg" and ".." not in uri
                with Image.open(out / uri) as im:  # relative to the catalog root
                    assert im.format == "JPEG" and im.size == (256, 256) and im.mode == "RGB"
                    im.load()
                n_images += 1
        assert summary["counts"][split]["images"] == sum(
            len(u) for u in pq.read_table(out / split / "part-00000.parquet").column("image_uris").to_pylist())
    assert n_images == len(list((out / "images").iterdir()))
    assert not list(out.rglob("*.tmp*"))


def test_catalog_is_byte_identical_for_the_same_arguments(tax, tmp_path):
    args = dict(listings=12, seed=7, seed_per_vertical=1, test_per_vertical=1, max_views=3, image_size=64,
                label_noise=0.2)
    write_synthetic_catalog(tmp_path / "a", taxonomy=tax, **args)
    write_synthetic_catalog(tmp_path / "b", taxonomy=tax, **args)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and "seed/part-00000.parquet" in a and "catalog.json" in a
    write_synthetic_catalog(tmp_path / "c", taxonomy=tax, **{**args, "seed": 8})
    c = _files(tmp_path / "c")
    for f in ("seed/part-00000.parquet", "unlabeled/part-00000.parquet", "test/part-00000.parquet",
              "truth/unlabeled.parquet", "images/test-watch-000000_0.jpg"):
        assert a[f] != c[f], f


def test_rewriting_a_smaller_catalog_removes_stale_images(tax, tmp_path):
    small = dict(listings=12, seed=1, seed_per_vertical=0, test_per_vertical=0, max_views=2)
    write_synthetic_catalog(tmp_path, taxonomy=tax, **{**small, "listings": 24}, image_size=64)
    write_synthetic_catalog(tmp_path, taxonomy=tax, **small, image_size=64)
    uris = {u for us in pq.read_table(tmp_path / "unlabeled").column("image_uris").to_pylist() for u in us}
    assert {f"images/{p.name}" for p in (tmp_path / "images").iterdir()} == uris


def test_label_noise_one_makes_every_seed_label_wrong(tax, tmp_path):
    args = dict(listings=0, seed=3, seed_per_vertical=2, test_per_vertical=0, max_views=2, image_size=64)
    write_synthetic_catalog(tmp_path / "clean", taxonomy=tax, **args)
    summary = write_synthetic_catalog(tmp_path / "noisy", taxonomy=tax, **args, label_noise=1.0)
    clean = pq.read_table(tmp_path / "clean" / "seed").to_pylist()
    noisy = pq.read_table(tmp_path / "noisy" / "seed").to_pylist()
    n = 0
    for c, d in zip(clean, noisy):
        assert c["listing_id"] == d["listing_id"] and c["image_uris"] == d["image_uris"]
        v = tax.vertical(c["vertical"])
        cl, nl, reasoning = dict(c["labels"]), dict(d["labels"]), dict(d["reasoning"])
        for a in cl:
            assert nl[a] != cl[a] and nl[a] in v.attributes[a].values
            assert nl[a] in reasoning[a]
            n += 1
    assert summary["counts"]["noisy_labels"] == summary["counts"]["seed_labels"] == n
    assert {(x["listing_id"], x["attribute"]) for x in summary["label_noise"]["labels"]} == {
        (c["listing_id"], a) for c in clean for a in dict(c["labels"])}
    # noise changes labels, never images
    assert _files(tmp_path / "clean" / "images") == _files(tmp_path / "noisy" / "images")


def test_an_evidence_teacher_changes_the_seed_reasoning_only(tax, tmp_path):
    """``teacher="evidence"``: every file but the seed split and catalog.json is byte-identical to the explained
    catalog's; each seed reasoning is the explained one's visual evidence alone, as a sentence, with no answer
    phrase."""
    args = dict(listings=6, seed=3, seed_per_vertical=2, test_per_vertical=1, max_views=2, image_size=48)
    write_synthetic_catalog(tmp_path / "explained", taxonomy=tax, **args)
    summary = write_synthetic_catalog(tmp_path / "evidence", taxonomy=tax, **args, teacher="evidence")
    assert summary["args"]["teacher"] == "evidence"
    a, b = _files(tmp_path / "explained"), _files(tmp_path / "evidence")
    assert {f for f in a if a[f] != b[f]} == {"seed/part-00000.parquet", "catalog.json"}
    explained = pq.read_table(tmp_path / "explained" / "seed").to_pylist()
    evidence = pq.read_table(tmp_path / "evidence" / "seed").to_pylist()
    for x, y in zip(explained, evidence):
        assert x["labels"] == y["labels"]
        for (attr, why), (attr2, ev) in zip(x["reasoning"], y["reasoning"]):
            assert attr == attr2 and ev.endswith(".") and ev[0].isupper() and ev != why
            assert ev[:-1].lower() in why.lower()
            assert "option" not in ev and "most suitable" not in ev and "indicates" not in ev
    with pytest.raises(ValueError, match="teacher"):
        write_synthetic_catalog(tmp_path / "x", taxonomy=tax, **args, teacher="oracle")


def test_the_descriptors_teacher_names_a_shade_of_each_colour_and_a_motif_of_each_print(tax, tmp_path):
    """``teacher="descriptors"``: a colour attribute's seed reasoning names one of the value's shades, a pattern
    attribute's one of its motifs (several per value, as many as SHADES and PRINTS list), then the value; every other
    attribute's reasoning gives the explained teacher's evidence; nothing but the seed split differs from the explained
    catalog."""
    from attrpipe.synth.catalog import PRINTS, SHADES, evidence_text
    from attrpipe.synth.render.colours import COLOURS, PATTERNS

    assert set(SHADES) == set(COLOURS) and set(PRINTS) == set(PATTERNS)
    owners = {}
    for table, tag in ((SHADES, " is "), (PRINTS, " shows ")):
        assert len({len(d) for d in table.values()}) >= 3  # values differ in how many descriptors lead to them
        owner = {d: value for value, ds in table.items() for d in ds}
        assert len(owner) == sum(len(d) for d in table.values())  # a descriptor names one value only
        owners[tag] = owner
    args = dict(listings=4, seed=5, seed_per_vertical=6, test_per_vertical=1, max_views=1, image_size=48)
    write_synthetic_catalog(tmp_path / "explained", taxonomy=tax, **args)
    write_synthetic_catalog(tmp_path / "desc", taxonomy=tax, **args, teacher="descriptors")
    a, b = _files(tmp_path / "explained"), _files(tmp_path / "desc")
    assert {f for f in a if a[f] != b[f]} == {"seed/part-00000.parquet", "catalog.json"}
    named = {}
    for row in pq.read_table(tmp_path / "desc" / "seed").to_pylist():
        labels, v = dict(row["labels"]), tax.vertical(row["vertical"])
        for attr, why in row["reasoning"]:
            assert why.rstrip(".").endswith(labels[attr])
            tag = " is " if attr.endswith("color") else " shows " if attr.endswith("pattern") else None
            if tag:
                owner = owners[tag]
                d = next(d for d in sorted(owner, key=len, reverse=True) if f"{tag}{d}" in why)
                assert owner[d] == labels[attr], why
                named.setdefault(labels[attr], set()).add(d)
            else:  # the explained teacher's evidence (which draws nothing for these attributes)
                assert evidence_text(v, v.attributes[attr], labels[attr], random.Random(0)).lower() in why.lower()
    assert any(len(d) > 1 for d in named.values())  # one value, several descriptors named
    assert named.keys() & set(PRINTS) and named.keys() & set(SHADES)


def test_label_noise_is_an_exact_fraction(tax, tmp_path):
    summary = write_synthetic_catalog(tmp_path, taxonomy=tax, listings=0, seed=3, seed_per_vertical=1,
                                      test_per_vertical=0, max_views=1, image_size=48, label_noise=0.25)
    c = summary["counts"]
    assert c["noisy_labels"] == round(0.25 * c["seed_labels"])


def test_invalid_arguments(tax, tmp_path):
    with pytest.raises(ValueError, match="label_noise"):
        write_synthetic_catalog(tmp_path, taxonomy=tax, listings=1, seed=0, label_noise=1.5)
    with pytest.raises(ValueError, match="max_views"):
        write_synthetic_catalog(tmp_path, taxonomy=tax, listings=1, seed=0, max_views=0)
