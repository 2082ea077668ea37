"""On-disk schemas (Parquet, via pyarrow). docs/data-format.md documents them; tests check files against them.

A *catalog* (unlabeled pool, or anything to predict on) is a Parquet dataset with one row per listing:

- ``listing_id``   string, unique within a catalog
- ``vertical``     string, a vertical of the taxonomy
- ``image_uris``   list<string>: local paths or URIs (``s3://...``); a relative path is relative to the catalog's
                   directory and may not contain ``..``
- ``image_bytes``  list<binary>, optional: encoded images inline (used instead of ``image_uris`` when non-empty)
- ``seller_attributes`` map<string, string>, optional: what the seller declared; never used as a label

A *labeled* set (seed and test splits) adds:

- ``labels``       map<string, string>: attribute -> allowed value (ground truth)
- ``reasoning``    map<string, string>, optional: attribute -> teacher-style reasoning for the SFT target
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["CATALOG_SCHEMA", "LABELED_SCHEMA", "REQUIRED_CATALOG_COLUMNS", "REQUIRED_LABELED_COLUMNS"]

_STR_MAP = pa.map_(pa.string(), pa.string())

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("listing_id", pa.string(), nullable=False),
        pa.field("vertical", pa.string(), nullable=False),
        pa.field("image_uris", pa.list_(pa.string())),
        pa.field("image_bytes", pa.list_(pa.binary())),
        pa.field("seller_attributes", _STR_MAP),
    ]
)

LABELED_SCHEMA = CATALOG_SCHEMA.append(pa.field("labels", _STR_MAP, nullable=False)).append(
    pa.field("reasoning", _STR_MAP)
)

REQUIRED_CATALOG_COLUMNS = ("listing_id", "vertical")
REQUIRED_LABELED_COLUMNS = REQUIRED_CATALOG_COLUMNS + ("labels",)
