"""The bad-input corpus through the whole pseudo-labeling pipeline: every case gets the outcome docs/reliability.md
documents, the run goes on, and `attrpipe audit` passes.

The corpus is built here: broken and odd images, bad URIs, odd listings, a vertical whose values are not ASCII, and
a catalog file that is not Parquet at all. The engine is the scripted test double (tests/fakes.py), so the test
checks the data path, not a model.
"""

import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from attrpipe.audit import audit, format_report
from attrpipe.config import load_config
from attrpipe.pseudolabel.pipeline import run_pseudolabel
from catalogs import LOOSE_SCHEMA
from test_images import encode, png_claiming

# listing id -> (images as (file name, bytes) or URIs, vertical, outcome): "labeled" or the quarantine reason.
NON_ASCII_VERTICAL = """\
name: chaussure
display_name: chaussure à talon
attributes:
  couleur:
    description: La couleur principale, vue sur les images.
    values: [Rouge cerise, Bleu clair, Crème brûlée, 日本の藍]
"""


def _jpeg(mode="RGB", size=(64, 48), color="red", **kw) -> bytes:
    return encode(Image.new(mode, size, color), "JPEG", **kw)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.new("RGB", (60, 20), "green"), "JPEG", exif=exif.tobytes())


CASES = {
    # id: (vertical, [(file name, bytes) | uri], expected outcome)
    "good": ("suitcase", [("good.jpg", _jpeg())], "labeled"),
    "truncated-jpeg": ("suitcase", [("trunc.jpg", _jpeg(size=(200, 200))[:300])], "image_truncated"),
    "text-named-jpg": ("suitcase", [("text.jpg", b"plain text in a file named like a photo")], "image_not_an_image"),
    "png-alpha": ("suitcase", [("alpha.png", encode(Image.new("RGBA", (50, 30), (255, 0, 0, 0)), "PNG"))],
                  "labeled"),
    "cmyk-jpeg": ("suitcase", [("cmyk.jpg", _jpeg("CMYK", (40, 40), (0, 255, 0, 0)))], "labeled"),
    "png-16-bit": ("suitcase", [("i16.png", encode(Image.new("I;16", (40, 40), 40000), "PNG"))], "labeled"),
    "png-palette": ("suitcase", [("pal.png", encode(Image.new("P", (40, 40), 3), "PNG"))], "labeled"),
    "exif-rotated": ("suitcase", [("exif.jpg", _exif_rotated())], "labeled"),
    "one-pixel": ("suitcase", [("one.png", encode(Image.new("RGB", (1, 1), "blue"), "PNG"))], "labeled"),
    "gigapixel-header": ("suitcase", [("giga.png", png_claiming(100_000, 100_000))], "image_too_many_pixels"),
    "missing-file": ("suitcase", ["images/nowhere.jpg"], "image_missing"),
    "dotdot-uri": ("suitcase", ["../images/good.jpg"], "image_bad_uri"),
    "http-uri": ("suitcase", ["http://example.invalid/a.jpg"], "image_bad_uri"),
    "no-images": ("suitcase", [], "no_images"),
    "twenty-images": ("watch", [("good.jpg", None)] * 20, "labeled"),
    "unknown-vertical": ("spaceship", [("good.jpg", None)], "unknown_vertical"),
    "non-ascii-values": ("chaussure", [("good.jpg", None)], "labeled"),
}


def _write_with_corrupt_second_row_group(path: Path) -> None:
    """Two row groups of two listings; the second group's pages are overwritten (its page headers no longer parse),
    the footer is intact: the file opens and its first group reads."""
    rows = [{"listing_id": f"row-group-{i}", "vertical": "watch", "image_uris": ["images/good.jpg"],
             "image_bytes": None, "seller_attributes": None} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows, schema=LOOSE_SCHEMA), path, row_group_size=2)
    data = bytearray(path.read_bytes())
    group = pq.ParquetFile(path).metadata.row_group(1)
    for c in range(group.num_columns):
        col = group.column(c)
        start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
        data[start:start + col.total_compressed_size] = b"\xff" * col.total_compressed_size
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("bad-input")
    (root / "images").mkdir()
    (root / "unlabeled").mkdir()
    (root / "catalog.json").write_text(json.dumps({"format": "test"}))
    tax = root / "taxonomy"
    tax.mkdir()
    for v in ("suitcase", "watch"):
        shutil.copy(f"conf/taxonomy/{v}.yaml", tax)
    (tax / "chaussure.yaml").write_text(NON_ASCII_VERTICAL, encoding="utf-8")
    rows = []
    for lid, (vertical, images, _) in CASES.items():
        uris = []
        for img in images:
            if isinstance(img, tuple):
                name, data = img
                if data is not None:
                    (root / "images" / name).write_bytes(data)
                uris.append(f"images/{name}")
            else:
                uris.append(img)
        rows.append({"listing_id": lid, "vertical": vertical, "image_uris": uris})
    # duplicate listing ids, one in each file: both rows are quarantined
    rows.append({"listing_id": "dup", "vertical": "watch", "image_uris": ["images/good.jpg"]})
    second = [{"listing_id": "dup", "vertical": "watch", "image_uris": ["images/good.jpg"]},
              {"listing_id": None, "vertical": "watch", "image_uris": ["images/good.jpg"]}]
    for i, part in enumerate((rows, second)):
        pq.write_table(pa.Table.from_pylist([{"image_bytes": None, "seller_attributes": None, **r} for r in part],
                                            schema=LOOSE_SCHEMA), root / "unlabeled" / f"part-{i}.parquet")
    (root / "unlabeled" / "part-2.parquet").write_bytes(b"PAR1 this file was cut short by a failed upload")
    _write_with_corrupt_second_row_group(root / "unlabeled" / "part-3.parquet")
    out = root.parent / "bad-input-out"
    cfg = load_config("conf/tiny_cpu.yaml", [
        f"data.root={root}", f"pseudolabel.output={out}", "generation.engine=fakes:ScriptedEngine",
        f"taxonomy.path={tax}", "pseudolabel.listings_per_unit=4"])
    manifest = run_pseudolabel(cfg, verbose=False)
    return out, manifest


def test_every_case_has_its_documented_outcome(corpus_run):
    out, manifest = corpus_run
    quarantined = {(q["listing_id"], q["source"]): q for q in pq.read_table(out / "quarantine").to_pylist()}
    labeled = {r["listing_id"] for r in pq.read_table(out / "consensus").to_pylist()}
    for lid, (_, _, outcome) in CASES.items():
        reasons = [q["reason"] for (qid, _), q in quarantined.items() if qid == lid]
        if outcome == "labeled":
            assert lid in labeled and not reasons, (lid, reasons)
        else:
            assert reasons == [outcome] and lid not in labeled, (lid, reasons)
    assert sorted(q["source"] for q in quarantined.values() if q["reason"] == "duplicate_listing_id") == \
        ["part-0.parquet#17", "part-1.parquet#0"]
    unreadable = sorted((q for q in quarantined.values() if q["listing_id"] is None), key=lambda q: q["source"])
    assert [(q["reason"], q["source"]) for q in unreadable] == [
        ("missing_listing_id", "part-1.parquet#1"),
        ("unreadable_catalog_rows", "part-2.parquet"),  # not Parquet at all: one row for the file
        ("unreadable_catalog_rows", "part-3.parquet#2"),  # the corrupt second row group: one row per row it held
        ("unreadable_catalog_rows", "part-3.parquet#3")]
    assert "Parquet" in unreadable[1]["detail"]
    assert all("row group 1" in q["detail"] for q in unreadable[2:])
    assert {"row-group-0", "row-group-1"} <= labeled  # the file's readable first group goes on
    c = manifest["counts"]
    # the corpus, the duplicates and the null id, the broken file, the file with a corrupt row group (4 rows)
    assert c["listings_in"] == len(CASES) + 3 + 1 + 4
    assert c["listings_in"] == c["listings_labeled"] + c["listings_quarantined"]
    assert c["extra_images_dropped"] == 15  # twenty images: the first five are used


def test_odd_listings_are_labeled_as_they_should_be(corpus_run):
    out, _ = corpus_run
    rows = {r["example_id"]: r for r in pq.read_table(out / "consensus").to_pylist()}
    twenty = [r for r in rows.values() if r["listing_id"] == "twenty-images"]
    assert twenty and all(len(r["image_uris"]) == 5 and r["images_dropped"] == 15 for r in twenty)
    accents = rows["non-ascii-values::couleur"]
    allowed = {"Rouge cerise", "Bleu clair", "Crème brûlée", "日本の藍"}
    assert accents["consensus"] in allowed
    assert {ch["answer"] for ch in accents["chains"]} <= allowed | {None}


def test_the_audit_passes_on_the_corpus_run(corpus_run):
    out, _ = corpus_run
    rep = audit(str(out))
    assert rep.ok, format_report(rep)
    assert rep.facts["input_rows"] == len(CASES) + 4 + 4  # + the file with a corrupt row group
