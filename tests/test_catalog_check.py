"""`attrpipe catalog check`: its tallies (pure), and on a catalog with every kind of bad row, the same
would-quarantine counts as `attrpipe pseudolabel` quarantines on it (both through the command line)."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attrpipe.catalog_check import merge_tallies, size_bucket, unit_tally
from attrpipe.cli import main
from attrpipe.pseudolabel.stages import InspectedListing
from catalogs import LOOSE_SCHEMA, write_catalog

CONF = "conf/tiny_cpu.yaml"


def test_size_buckets_and_tallies():
    assert [size_bucket(*s) for s in [(10, 255), (256, 3), (1023, 1023), (300, 2047), (4000, 10)]] == [
        "< 256 px", "256-511 px", "512-1023 px", "1024-2047 px", ">= 2048 px"]
    a = unit_tally([
        InspectedListing("a", "watch", "f#0", [("JPEG", 120, 90, 1000), ("PNG", 600, 600, 5000)], 2),
        {"reason": "no_images"}, {"reason": "image_missing"}, {"reason": "no_images"},
    ])
    assert a == {"rows": 4, "would_label": 1, "would_quarantine": 3,
                 "quarantine_reasons": {"no_images": 2, "image_missing": 1}, "extra_images_dropped": 2,
                 "images": 2, "image_bytes": 6000, "image_formats": {"JPEG": 1, "PNG": 1},
                 "image_sizes": {"< 256 px": 1, "512-1023 px": 1}, "verticals_matched": {}}
    b = unit_tally([InspectedListing("b", "watch", "f#1", [("JPEG", 3000, 10, 7)], 0, " Watch")])
    m = merge_tallies([a, b])
    assert (m["rows"], m["would_label"], m["images"], m["image_bytes"]) == (5, 2, 3, 6007)
    assert m["image_formats"] == {"JPEG": 2, "PNG": 1} and m["verticals_matched"] == {"' Watch' -> watch": 1}
    assert list(m["image_sizes"]) == ["< 256 px", "512-1023 px", ">= 2048 px"]  # in bucket order
    assert merge_tallies([])["rows"] == 0


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("check-catalog")
    info = write_catalog(root)
    (root / "unlabeled" / "part-00009.parquet").write_bytes(b"PAR1 cut short by a failed upload")
    return root, info


def _overrides(root: Path, out: Path) -> list[str]:
    return [f"data.root={root}", f"pseudolabel.output={out}", "generation.engine=fakes:ScriptedEngine",
            "taxonomy.verticals=[suitcase,watch]", "pseudolabel.listings_per_unit=4", f"run.output_dir={out}-runs"]


def test_the_check_predicts_what_pseudolabeling_quarantines(catalog, ray_local, capsys):
    root, info = catalog
    out = root.parent / "check-pl"
    report_path = root.parent / "check.json"
    assert main(["catalog", "check", str(root / "unlabeled"), CONF, *_overrides(root, out),
                 "--out", str(report_path)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    c = report["counts"]
    assert report["ok"] and report["schema_ok"] and "would quarantine" in printed and "image_truncated" in printed
    assert main(["pseudolabel", CONF, *_overrides(root, out)]) == 0
    m = json.loads((out / "manifest.json").read_text())["counts"]
    assert c["rows"] == m["listings_in"] == info["rows"] + 1  # + the unreadable file's one row
    assert c["would_label"] == m["listings_labeled"]
    assert c["would_quarantine"] == m["listings_quarantined"]
    assert c["quarantine_reasons"] == m["quarantine_reasons"]
    assert set(c["quarantine_reasons"]) >= {"unknown_vertical", "image_missing", "image_truncated",
                                            "image_not_an_image", "no_images", "image_bad_uri",
                                            "duplicate_listing_id", "missing_listing_id", "unreadable_catalog_rows"}
    assert c["extra_images_dropped"] == m["extra_images_dropped"] == 15
    assert c["image_formats"] == {"JPEG": c["images"]} and sum(c["image_sizes"].values()) == c["images"] > 0
    assert main(["audit", str(out)]) == 0


def test_unusable_schema_and_nothing_to_label_exit_1(tmp_path, ray_local):
    bad = tmp_path / "no-vertical"
    bad.mkdir()
    pq.write_table(pa.table({"listing_id": ["a"], "image_uris": [["x.jpg"]]}), bad / "part-0.parquet")
    report = tmp_path / "r1.json"
    assert main(["catalog", "check", str(bad), CONF, "--out", str(report)]) == 1
    r = json.loads(report.read_text())
    assert not r["schema_ok"] and "no column 'vertical'" in r["schema_error"] and r["counts"]["rows"] == 0
    assert main(["catalog", "check", str(tmp_path / "nowhere"), CONF, "--out", str(report)]) == 1
    assert "does not exist" in json.loads(report.read_text())["schema_error"]
    spaceships = tmp_path / "spaceships"
    spaceships.mkdir()
    pq.write_table(pa.Table.from_pylist(
        [{"listing_id": f"s{i}", "vertical": "spaceship", "image_uris": ["x.jpg"], "image_bytes": None,
          "seller_attributes": None} for i in range(3)], schema=LOOSE_SCHEMA), spaceships / "part-0.parquet")
    assert main(["catalog", "check", str(spaceships), CONF, "--out", str(report)]) == 1
    r = json.loads(report.read_text())
    assert r["schema_ok"] and r["counts"]["quarantine_reasons"] == {"unknown_vertical": 3} and not r["ok"]
