"""The shapes real exports come in: column names mapped by data.columns, hive-partitioned Parquet, JSON lines (plain
and gzipped), integer listing ids, vertical names that differ by case or spaces. The reading functions alone (no
Ray), then the real commands on such catalogs: `catalog check`, `pseudolabel` and `audit`, `evaluate`, and the seed
set as SFT's Ray Data reader takes it."""

import base64
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from attrpipe.catalog_io import CatalogReading, canonical_row, catalog_files, jsonl_offsets, partition_of, read_jsonl
from attrpipe.cli import main
from attrpipe.config import ConfigError, load_config
from attrpipe.pseudolabel.output import semantic_key
from attrpipe.pseudolabel.units import find_duplicate_ids, plan_units, read_labels, read_unit
from attrpipe.taxonomy import load_taxonomy

CONF = "conf/tiny_cpu.yaml"
EXPORT_COLUMNS = "data.columns={listing_id: product_id, vertical: category, image_uris: image_urls, labels: tags}"


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "JPEG")
    return buf.getvalue()


# --- reading, without Ray ---------------------------------------------------------------------------------------------


def test_partition_values_and_canonical_rows():
    assert partition_of("category=shoe/brand=A%20B/part-0.parquet") == {"category": "shoe", "brand": "A B"}
    assert partition_of("category=__HIVE_DEFAULT_PARTITION__/x.jsonl") == {"category": None}
    assert partition_of("part-0.parquet") == {}
    reading = CatalogReading((("listing_id", "product_id"), ("vertical", "category")))
    row = canonical_row({"product_id": 7, "image_urls": ["a.jpg"], "labels": {"color": "Red", "size": None},
                         "image_bytes": [base64.b64encode(b"\x89PNG").decode()]}, reading, {"category": "shoe"})
    assert row == {"listing_id": "7", "vertical": "shoe", "image_urls": ["a.jpg"], "labels": {"color": "Red"},
                   "image_bytes": [b"\x89PNG"]}
    assert canonical_row({"category": "own", "product_id": "x"}, reading, {"category": "p"})["vertical"] == "own"
    assert canonical_row({"listing_id": True}, CatalogReading())["listing_id"] is True  # a bool is not an id
    with pytest.raises(ValueError, match="base64"):
        canonical_row({"image_bytes": ["not base64!"]}, CatalogReading())


def test_vertical_names_are_matched_by_case_and_spaces_only_when_asked():
    tax = load_taxonomy("conf/taxonomy", ["suitcase", "watch"])
    assert tax.match_vertical("watch") == "watch" and tax.match_vertical(" Watch ") is None
    assert tax.match_vertical(" Watch ", loose=True) == "watch" and tax.match_vertical("WATCH", True) == "watch"
    assert tax.match_vertical("watches", True) is None and tax.match_vertical(None, True) is None


def test_catalog_files_take_hive_directories_and_skip_the_rest(tmp_path):
    for rel in ["part-0.parquet", "category=shoe/part-0.parquet", "category=shoe/brand=x/p.jsonl.gz",
                "category=bag/part-0.jsonl", "notes/part-9.parquet", "_tmp/part-1.parquet", ".hidden.parquet",
                "category=bag/readme.txt", "category=bag/_SUCCESS"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [f.name for f in catalog_files(str(tmp_path))] == [
        "category=bag/part-0.jsonl", "category=shoe/brand=x/p.jsonl.gz", "category=shoe/part-0.parquet",
        "part-0.parquet"]
    assert [f.format for f in catalog_files(str(tmp_path))] == ["jsonl", "jsonl", "parquet", "parquet"]
    with pytest.raises(FileNotFoundError):
        catalog_files(str(tmp_path / "notes" / "nothing"))


@pytest.mark.parametrize("gz", [False, True])
def test_json_lines_units_start_where_they_should(tmp_path, gz):
    lines = [json.dumps({"product_id": i, "n": i}) for i in range(10)]
    lines[4] = "{not json"
    lines[6] = "[1, 2]"
    text = ("\n".join(lines[:3]) + "\n\n  \n" + "\n".join(lines[3:])).encode()  # blank lines are not rows
    name = "c.jsonl.gz" if gz else "c.jsonl"
    (tmp_path / name).write_bytes(gzip.compress(text) if gz else text)
    n, offsets = jsonl_offsets(str(tmp_path / name), 3)
    assert n == 10 and len(offsets) == 4
    got = list(read_jsonl(str(tmp_path / name), offsets[1], 3))  # rows 3, 4, 5
    assert got[0] == {"product_id": 3, "n": 3} and isinstance(got[1], ValueError) and got[2]["n"] == 5
    units = plan_units(str(tmp_path), 3)
    assert [(u.start, u.stop) for u in units] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    reading = CatalogReading((("listing_id", "product_id"),))
    rows = [r for u in units for r in read_unit(u, ["listing_id", "n"], reading)]
    assert [r["_source"] for r in rows] == [f"{name}#{i}" for i in range(10)]
    assert [r.get("listing_id") for r in rows if "_error" not in r] == ["0", "1", "2", "3", "5", "7", "8", "9"]
    assert "not JSON" in rows[4]["_error"] and "not an object" in rows[6]["_error"]


def test_integer_ids_duplicates_and_labels_through_the_mapping(tmp_path):
    pq.write_table(pa.table({"product_id": pa.array([1, 2, 2, 3], pa.int64()),
                             "tags": pa.array([[("color", "Red")], [], [], [("color", "Blue")]],
                                              pa.map_(pa.string(), pa.string()))}), tmp_path / "p.parquet")
    (tmp_path / "q.jsonl").write_text('{"product_id": 3, "tags": {"color": "Blue"}}\n{"product_id": "4"}\n')
    reading = CatalogReading((("labels", "tags"), ("listing_id", "product_id")))
    assert find_duplicate_ids(str(tmp_path), reading) == {"2", "3"}
    assert read_labels(str(tmp_path), reading) == {"1": {"color": "Red"}, "2": {}, "3": {"color": "Blue"},
                                                   "4": {}}


def test_data_columns_are_validated_and_defaults_leave_the_run_keys_alone():
    with pytest.raises(ConfigError, match="data.columns.sku: not a column attrpipe reads"):
        load_config(CONF, ["data.columns={sku: product_id}"])
    with pytest.raises(ConfigError, match="mapped to the same column"):
        load_config(CONF, ["data.columns={listing_id: id, vertical: id}"])
    default = load_config(CONF, ["generation.engine=fakes:ScriptedEngine"])
    key = semantic_key(default, "cat", {"model": "m"}, False, None, None)
    assert "reading" not in key and "http" not in key["images"]  # a run written before these settings: same key
    assert set(key["images"]) == {"max_images", "size", "max_pixels", "max_bytes", "allowed_schemes"}
    mapped = load_config(CONF, [EXPORT_COLUMNS, "data.match_vertical_names=false"])
    assert semantic_key(mapped, "cat", {"model": "m"}, False, None, None)["reading"] == {
        "columns": {"image_uris": "image_urls", "labels": "tags", "listing_id": "product_id",
                    "vertical": "category"}, "match_vertical_names": False}


# --- the commands ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The same 12 listings as a hive-partitioned Parquet export and as JSON lines, in the export's own column names,
    with integer ids, a vertical written 'Suitcase ' / ' WATCH', an unknown vertical, a duplicate id, a bad line."""
    root = tmp_path_factory.mktemp("exports")
    (root / "images").mkdir()
    (root / "catalog.json").write_text(json.dumps({"format": "test"}))
    for k, color in enumerate(["red", "green", "blue", "white"]):
        (root / "images" / f"{k}.jpg").write_bytes(_jpeg(color))
    listings = []
    for i in range(12):
        category = ["Suitcase ", " WATCH", "watch"][i % 3]
        listings.append({"product_id": 100 + i, "category": category,
                         "image_urls": [f"images/{i % 4}.jpg", f"images/{(i + 1) % 4}.jpg"],
                         "tags": {"color": "Black"} if category.strip().lower() == "suitcase" else {}})
    listings.append({"product_id": 500, "category": "spaceship", "image_urls": ["images/0.jpg"], "tags": {}})
    listings.append({"product_id": 101, "category": "watch", "image_urls": ["images/0.jpg"], "tags": {}})  # dup
    # hive-partitioned Parquet: the vertical is the partition key
    hive = root / "hive"
    by_category: dict[str, list[dict]] = {}
    for r in listings:
        by_category.setdefault(r["category"], []).append(r)
    for category, rows in by_category.items():
        d = hive / f"category={category}"
        d.mkdir(parents=True)
        pq.write_table(pa.table({"product_id": pa.array([r["product_id"] for r in rows], pa.int64()),
                                 "image_urls": [r["image_urls"] for r in rows],
                                 "tags": pa.array([list(r["tags"].items()) for r in rows],
                                                  pa.map_(pa.string(), pa.string()))}), d / "part-0.parquet")
    # JSON lines: a gzipped file and a plain one with a bad line
    jl = root / "jsonl"
    jl.mkdir()
    text = [json.dumps(r) for r in listings]
    (jl / "part-0.jsonl.gz").write_bytes(gzip.compress(("\n".join(text[:7]) + "\n").encode()))
    (jl / "part-1.jsonl").write_text("\n".join(text[7:9]) + "\n{\"product_id\": 999, broken\n"
                                     + "\n".join(text[9:]) + "\n")
    return root, len(listings)


def _overrides(root: Path, out: Path | None, *extra: str) -> list[str]:
    """``out``: pseudolabel.output (None: not set; evaluate refuses it)."""
    return [f"data.root={root}", *([f"pseudolabel.output={out}"] if out else []),
            "generation.engine=fakes:ScriptedEngine", "taxonomy.verticals=[suitcase,watch]",
            "pseudolabel.listings_per_unit=3", f"run.output_dir={root / 'runs'}", EXPORT_COLUMNS, *extra]


@pytest.mark.parametrize("shape", ["hive", "jsonl"])
def test_an_export_is_checked_labeled_and_audited_in_its_own_shape(exports, shape, ray_local, capsys):
    root, n = exports
    out = root / f"out-{shape}"
    report = root / f"check-{shape}.json"
    catalog = str(root / shape)
    assert main(["catalog", "check", catalog, CONF, *_overrides(root, out), "--out", str(report)]) == 0
    printed = capsys.readouterr().out
    check = json.loads(report.read_text())["counts"]
    assert main(["pseudolabel", CONF, *_overrides(root, out), "--catalog", catalog]) == 0
    m = json.loads((out / "manifest.json").read_text())["counts"]
    bad_line = 1 if shape == "jsonl" else 0
    assert m["listings_in"] == check["rows"] == n + bad_line
    assert m["quarantine_reasons"] == check["quarantine_reasons"] == {
        "unknown_vertical": 1, "duplicate_listing_id": 2, **({"unreadable_catalog_rows": 1} if bad_line else {})}
    assert m["listings_labeled"] == check["would_label"] == 11
    # 'Suitcase ' and ' WATCH' matched: 4 + 4 listings, of which one ' WATCH' listing (id 101) is a duplicate
    assert m["verticals_matched"] == sum(check["verticals_matched"].values()) == 7
    assert "verticals matched by case/spaces" in printed and "'Suitcase ' -> suitcase" in printed
    cons = pq.read_table(out / "consensus").to_pylist()
    assert {r["vertical"] for r in cons} == {"suitcase", "watch"}
    assert {r["listing_id"] for r in cons} == {str(100 + i) for i in range(12)} - {"101"}
    assert all(len(r["image_uris"]) == 2 and r["image_uris"][0].startswith(str(root)) for r in cons)
    assert main(["audit", str(out)]) == 0


def test_matching_off_quarantines_the_other_spellings(exports, ray_local):
    root, n = exports
    report = root / "check-exact.json"
    assert main(["catalog", "check", str(root / "hive"), CONF,
                 *_overrides(root, None, "data.match_vertical_names=false"), "--out", str(report)]) == 0
    c = json.loads(report.read_text())["counts"]
    # spaceship, the four 'Suitcase ' and three ' WATCH' (the fourth, id 101, is a duplicate: checked before)
    assert c["quarantine_reasons"] == {"unknown_vertical": 1 + 4 + 3, "duplicate_listing_id": 2}
    assert c["verticals_matched"] == {}


def test_evaluate_reads_a_mapped_labeled_jsonl_test_set(exports, ray_local):
    root, _ = exports
    out = root / "eval"
    assert main(["evaluate", CONF, *_overrides(root, None), "--test", str(root / "jsonl"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # the four suitcases are labeled color=Black (the 'tags' column); the watches have no labels
    assert metrics["scored"] == 4 and metrics["per_attribute"]["suitcase.color"]["n"] == 4
    assert main(["audit", str(out / "predictions")]) == 0


def test_sft_reads_the_seed_set_in_an_export_shape_like_the_standard_one(exports, ray_local, tmp_path):
    from attrpipe.train.driver import count_records, training_records

    root, _ = exports
    seed_rows = [{"listing_id": f"{200 + i}", "vertical": "suitcase", "image_uris": ["images/0.jpg"],
                  "image_bytes": None, "labels": [("color", "Black")], "reasoning": None, "seller_attributes": None}
                 for i in range(3)]
    standard = tmp_path / "std" / "seed"
    standard.mkdir(parents=True)
    (tmp_path / "std" / "catalog.json").write_text("{}")
    (tmp_path / "std" / "images").symlink_to(root / "images")
    from attrpipe.schemas import LABELED_SCHEMA

    pq.write_table(pa.Table.from_pylist(seed_rows, schema=LABELED_SCHEMA), standard / "part-0.parquet")
    shaped = root / "seed-jsonl"
    (shaped / "category=Suitcase ").mkdir(parents=True)
    (shaped / "category=Suitcase " / "part-0.jsonl").write_text("".join(
        json.dumps({"product_id": int(r["listing_id"]), "image_urls": ["images/0.jpg"], "tags": {"color": "Black"}})
        + "\n" for r in seed_rows))
    cfg_std = load_config(CONF, ["taxonomy.verticals=[suitcase,watch]"])
    cfg_shaped = load_config(CONF, ["taxonomy.verticals=[suitcase,watch]", EXPORT_COLUMNS])

    def records(cfg, data):
        recs = training_records("sft", cfg, str(data)).take_all()
        return sorted((r["example_id"], r["prompt"], r["completion"], len(r["image_uris"])) for r in recs)

    got_std, got_shaped = records(cfg_std, standard), records(cfg_shaped, shaped)
    assert got_shaped == got_std and len(got_std) == 3
    assert count_records("sft", cfg_shaped, str(shaped)) == count_records("sft", cfg_std, str(standard)) == 3


def test_a_mapped_column_that_is_not_there_is_refused_naming_both_names(tmp_path, capsys):
    cat = tmp_path / "c"
    cat.mkdir()
    pq.write_table(pa.table({"product_id": pa.array([1], pa.int64()), "category": ["watch"],
                             "image_urls": [["a.jpg"]]}), cat / "part-0.parquet")
    argv = ["pseudolabel", CONF, "generation.engine=fakes:ScriptedEngine", f"pseudolabel.output={tmp_path / 'o'}",
            "--catalog", str(cat)]
    assert main([*argv, "data.columns={listing_id: sku, vertical: category, image_uris: image_urls}"]) == 2
    err = capsys.readouterr().err
    assert "no column 'sku' (data.columns.listing_id)" in err and not (tmp_path / "o").exists()
    assert main([*argv, "data.columns={listing_id: product_id, vertical: category, image_uris: img}"]) == 2
    assert "neither 'img' (data.columns.image_uris) nor 'image_bytes'" in capsys.readouterr().err
