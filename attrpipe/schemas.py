"""On-disk schemas (Parquet, via pyarrow). docs/data-format.md documents them; tests check files against them.

A *catalog* (unlabeled pool, or anything to predict on) is a Parquet (or JSON lines) dataset with one row per listing
(attrpipe/catalog_io.py reads the other shapes and column names real exports come in into these columns):

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


# --- pseudo-labeling outputs and training inputs ---------------------------------------------------------------------
# Image references in these tables are *resolved*: absolute paths or URIs (never relative to a catalog), so a
# trainer can read them without knowing where the catalog was. Listings whose images were inline carry the (already
# validated, original) bytes in `image_bytes` instead.

CHAIN_TYPE = pa.struct(
    [
        pa.field("text", pa.string()),  # the raw generated text
        pa.field("reasoning", pa.string()),  # parsed reasoning (null if none)
        pa.field("answer", pa.string()),  # the canonical allowed value (null if no answer)
        pa.field("reason", pa.string()),  # why there is no answer (null if answered)
    ]
)

CONSENSUS_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),  # "<listing_id>::<attribute>"
        pa.field("listing_id", pa.string(), nullable=False),
        pa.field("vertical", pa.string(), nullable=False),
        pa.field("attribute", pa.string(), nullable=False),
        pa.field("consensus", pa.string()),  # null when no chain parsed
        pa.field("confidence", pa.float64(), nullable=False),  # C = agreeing chains / all chains
        pa.field("n_chains", pa.int32(), nullable=False),
        pa.field("n_valid", pa.int32(), nullable=False),  # chains that parsed to an allowed value
        pa.field("tied", pa.bool_(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),  # consensus is not null and C >= threshold
        pa.field("chains", pa.list_(CHAIN_TYPE), nullable=False),
        pa.field("image_uris", pa.list_(pa.string())),
        pa.field("image_bytes", pa.list_(pa.binary())),
        pa.field("images_dropped", pa.int32(), nullable=False),  # images past images.max_images, not used
        pa.field("round", pa.int32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("adapter", pa.string()),
        pa.field("adapter_fingerprint", pa.string()),
    ]
)

PAIRS_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("listing_id", pa.string(), nullable=False),
        pa.field("vertical", pa.string(), nullable=False),  # the vertical's name (taxonomy key)
        pa.field("attribute", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),  # the user text (attrpipe.prompts.user_text)
        pa.field("image_uris", pa.list_(pa.string())),
        pa.field("image_bytes", pa.list_(pa.binary())),
        pa.field("chosen", pa.string(), nullable=False),  # a preferred chain's full text
        pa.field("rejected", pa.string(), nullable=False),  # a dispreferred chain's full text
        pa.field("chosen_index", pa.int32(), nullable=False),
        pa.field("rejected_index", pa.int32(), nullable=False),
        pa.field("consensus", pa.string(), nullable=False),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("listing_id", pa.string()),  # null when the row had none
        pa.field("vertical", pa.string()),
        pa.field("source", pa.string(), nullable=False),  # "<file>#<row>" of the input row
        pa.field("reason", pa.string(), nullable=False),  # a stable code, e.g. missing_image, unknown_vertical
        pa.field("detail", pa.string()),
    ]
)

# `attrpipe predict`: one row per listing-attribute of the catalog; the rows that need a human go to review/ too.
PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("listing_id", pa.string(), nullable=False),
        pa.field("vertical", pa.string(), nullable=False),
        pa.field("attribute", pa.string(), nullable=False),
        pa.field("value", pa.string()),  # the predicted allowed value; null when no chain parsed
        pa.field("confidence", pa.float64()),  # self-consistency: C; greedy: null (one chain has no C)
        pa.field("n_chains", pa.int32(), nullable=False),
        pa.field("n_valid", pa.int32(), nullable=False),
        pa.field("needs_review", pa.bool_(), nullable=False),
        pa.field("review_reason", pa.string()),  # no_answer | low_confidence; null when not for review
        pa.field("model", pa.string(), nullable=False),
        pa.field("adapter", pa.string()),
    ]
)

REVIEW_SCHEMA = (
    PREDICTIONS_SCHEMA.append(pa.field("votes", pa.map_(pa.string(), pa.int32())))
    .append(pa.field("image_uris", pa.list_(pa.string())))
    .append(pa.field("image_bytes", pa.list_(pa.binary())))
)

# keys/<unit>.parquet: one row per labeled listing of a pseudo-labeling or prediction output, with the content key
# of what its rows depend on (attrpipe.pseudolabel.incremental). A later run's ``--since`` reads these.
KEYS_SCHEMA = pa.schema(
    [
        pa.field("listing_id", pa.string(), nullable=False),
        pa.field("vertical", pa.string(), nullable=False),
        pa.field("content_key", pa.string(), nullable=False),  # sha256 hex
        # what the run did with it: "labeled" (no --since), or with --since "new", "relabeled", "carried_over"
        pa.field("status", pa.string(), nullable=False),
    ]
)

# _since/<unit>.parquet (an incremental run's index of the previous output): one row per listing id of the unit's
# input rows, with the previous output's key and unit where it had the listing (null where it did not).
SINCE_SCHEMA = pa.schema(
    [
        pa.field("listing_id", pa.string(), nullable=False),
        pa.field("previous_key", pa.string()),
        pa.field("previous_unit", pa.string()),
    ]
)
