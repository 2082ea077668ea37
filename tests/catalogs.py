"""Small catalogs built by the tests, with the bad rows the pipeline must quarantine."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from attrpipe.schemas import CATALOG_SCHEMA


# Real catalogs are not always well-formed: the bad rows need a null listing_id.
LOOSE_SCHEMA = pa.schema([f.with_nullable(True) for f in CATALOG_SCHEMA])


def _jpeg(color, size=(120, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def write_catalog(root: Path, *, good: int = 12, verticals=("suitcase", "watch"), bad: bool = True,
                  files: int = 2) -> dict:
    """A catalog directory (catalog.json + images/ + unlabeled/part-*.parquet). Returns expected quarantine reasons."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "unlabeled").mkdir(exist_ok=True)
    (root / "catalog.json").write_text(json.dumps({"format": "test"}))
    rows = []
    for i in range(good):
        uris = []
        for k in range(1 + i % 3):
            name = f"images/g{i}_{k}.jpg"
            (root / name).write_bytes(_jpeg((i * 17 % 255, k * 60, 90)))
            uris.append(name)
        rows.append({"listing_id": f"g{i:03d}", "vertical": verticals[i % len(verticals)], "image_uris": uris})
    expected = {}
    if bad:
        (root / "images" / "trunc.jpg").write_bytes(_jpeg("red")[:200])
        (root / "images" / "text.jpg").write_bytes(b"definitely not an image")
        rows += [
            {"listing_id": "b-vertical", "vertical": "spaceship", "image_uris": ["images/g0_0.jpg"]},
            {"listing_id": "b-missing", "vertical": verticals[0], "image_uris": ["images/nowhere.jpg"]},
            {"listing_id": "b-trunc", "vertical": verticals[0], "image_uris": ["images/trunc.jpg"]},
            {"listing_id": "b-text", "vertical": verticals[0], "image_uris": ["images/text.jpg"]},
            {"listing_id": "b-none", "vertical": verticals[0], "image_uris": []},
            {"listing_id": "b-dotdot", "vertical": verticals[0], "image_uris": ["../outside.jpg"]},
            {"listing_id": "b-scheme", "vertical": verticals[0], "image_uris": ["ftp://host/a.jpg"]},
            {"listing_id": "b-dup", "vertical": verticals[0], "image_uris": ["images/g0_0.jpg"]},
            {"listing_id": "b-dup", "vertical": verticals[0], "image_uris": ["images/g1_0.jpg"]},
            {"listing_id": None, "vertical": verticals[0], "image_uris": ["images/g0_0.jpg"]},
            {"listing_id": "b-twenty", "vertical": verticals[0], "image_uris": ["images/g0_0.jpg"] * 20},
            {"listing_id": "b-inline", "vertical": verticals[0], "image_uris": None,
             "image_bytes": [_jpeg("blue"), _jpeg("green")]},
        ]
        expected = {
            "b-vertical": "unknown_vertical", "b-missing": "image_missing", "b-trunc": "image_truncated",
            "b-text": "image_not_an_image", "b-none": "no_images", "b-dotdot": "image_bad_uri",
            "b-scheme": "image_bad_uri", "b-dup": "duplicate_listing_id", None: "missing_listing_id",
        }
    per_file = -(-len(rows) // files)
    for f in range(files):
        part = rows[f * per_file:(f + 1) * per_file]
        table = pa.Table.from_pylist([{**{"image_bytes": None, "seller_attributes": None}, **r} for r in part],
                                     schema=LOOSE_SCHEMA)
        pq.write_table(table, root / "unlabeled" / f"part-{f:05d}.parquet", row_group_size=5)
    return {"rows": len(rows), "expected_quarantine": expected}
