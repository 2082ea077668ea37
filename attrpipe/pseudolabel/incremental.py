"""Incremental labeling (``attrpipe predict|pseudolabel --since PREVIOUS_OUTPUT``): label only the listings that are
new or changed since a previous output, carry the others' rows over, and account for every listing.

**The content key.** Every output stores, per labeled listing, a key of what its rows depend on
(``keys/<unit>.parquet``, schemas.KEYS_SCHEMA): the sha256 of

- the run's *labeling identity* (:data:`LABELING_KEYS` of its ``_run.json``: the model's and the adapter's
  fingerprints, the generation settings, the image settings that decide the pixels, the seed, the threshold, the
  review threshold, the round, the oracle truth file),
- the listing's vertical and the prompts it is asked (the system prompt and each asked attribute's question, which
  holds the attribute's description and allowed values: that vertical's taxonomy, nothing else of it),
- the sha256 of each used image's bytes as read (not their URIs: a CDN URL can keep its name with new bytes).

**A run with --since.** Its labeling identity must equal the previous output's (else it is refused, naming what
differs; ``--relabel-all`` relabels everything instead). Before labeling, a Ray Data join of the new catalog's listing
ids with the previous output's keys writes, for each new unit, where each of its listings was before
(``_since/<unit>.parquet``, schemas.SINCE_SCHEMA; ``_since/_index.json`` when whole). Each listing then reads its
images once: if its key equals the previous one it is *carried over* (its rows are copied from the previous output's
unit, with the image URIs as the new catalog names them; it never reaches the engine), else it is *relabeled* (its id
was there with another key) or *new*. Listings gone from the catalog are gone from the output and counted as
*removed*. The output is a complete snapshot of the new catalog, audited like any other plus the carry-over checks.

Plain functions here (keys, identities, statuses, the carried rows); :func:`build_index` is the one Ray step.
"""

from __future__ import annotations

import hashlib
import json
import posixpath

import pyarrow as pa
import pyarrow.compute as pc

from attrpipe import storage
from attrpipe.prompts import SYSTEM_PROMPT, user_text

__all__ = [
    "LABELING_KEYS", "STATUSES", "CARRIED_SHARDS", "KEYS_DIR", "SINCE_DIR", "INDEX_FILE",
    "labeling_identity", "labeling_differences", "vertical_identities", "image_digest", "content_key", "status_of",
    "check_since", "index_path", "read_index", "previous_rows", "carry_over", "build_index",
]

# what of a run's _run.json key decides every row a listing gets (the taxonomy counts per vertical, in the key)
LABELING_KEYS = ("model_fingerprint", "adapter_fingerprint", "images", "generation", "seed", "threshold",
                 "review_below", "round", "oracle_truth")
_IMAGE_KEYS = ("size", "max_images", "max_pixels", "max_bytes")  # the image settings that decide the pixels
STATUSES = ("labeled", "new", "relabeled", "carried_over")  # keys/'s status: "labeled" is a run without --since
CARRIED_SHARDS = ("consensus", "pairs", "predictions", "review")  # a listing's rows (quarantine: never carried)
KEYS_DIR = "keys"
SINCE_DIR = "_since"
INDEX_FILE = "_index.json"


# --- keys (pure) ------------------------------------------------------------------------------------------------------


def labeling_identity(key: dict) -> dict:
    """The part of a run's key (attrpipe.pseudolabel.output.semantic_key) that decides a listing's rows."""
    ident = {k: key.get(k) for k in LABELING_KEYS}
    ident["images"] = {k: (key.get("images") or {}).get(k) for k in _IMAGE_KEYS}
    return ident


def labeling_differences(previous_key: dict, key: dict) -> list[str]:
    """The labeling-identity entries in which two runs' keys differ (``images.size``, ``generation.temperature``,
    ``adapter_fingerprint``, ...), sorted."""
    a, b = labeling_identity(previous_key), labeling_identity(key)
    out = []
    for k in LABELING_KEYS:
        if isinstance(a[k], dict) and isinstance(b[k], dict):
            out += [f"{k}.{s}" for s in sorted(set(a[k]) | set(b[k])) if a[k].get(s) != b[k].get(s)]
        elif a[k] != b[k]:
            out.append(k)
    return sorted(out)


def vertical_identities(key: dict, taxonomy, asked: dict[str, list]) -> dict[str, str]:
    """vertical -> the hash of the labeling identity, the vertical and the prompts its listings are asked (``asked``:
    vertical -> its asked attributes, as the pipeline asks them)."""
    base = json.dumps(labeling_identity(key), sort_keys=True)
    out = {}
    for vertical, attributes in asked.items():
        display = taxonomy.vertical(vertical).display_name
        prompts = [[a.name, user_text(a, display)] for a in attributes]
        blob = json.dumps([base, SYSTEM_PROMPT, vertical, prompts], sort_keys=True)
        out[vertical] = hashlib.sha256(blob.encode("utf-8")).hexdigest()
    return out


def image_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(vertical_identity: str, image_digests: list[str]) -> str:
    """A listing's content key: its vertical's identity and its used images' digests, in order."""
    return hashlib.sha256("\0".join([vertical_identity, *image_digests]).encode("ascii")).hexdigest()


def status_of(previous_key: str | None, key: str, *, relabel_all: bool = False) -> str:
    """``new`` (the previous output did not have the listing), ``carried_over`` (same key, unless ``relabel_all``)
    or ``relabeled``."""
    if previous_key is None:
        return "new"
    return "carried_over" if previous_key == key and not relabel_all else "relabeled"


# --- the previous output ----------------------------------------------------------------------------------------------


def check_since(previous: str, key: dict, *, relabel_all: bool = False) -> dict:
    """The previous output's ``_run.json`` key, after checking that it can stand as the previous output of a run of
    ``key``: a finished pseudo-labeling or prediction output with content keys, of the same labeling identity (with
    ``relabel_all``, a different identity is allowed: every listing's key then differs and is relabeled)."""
    from attrpipe.pseudolabel.output import MANIFEST_FILE, read_run_key

    prev = read_run_key(previous)
    if prev is None:
        raise FileNotFoundError(f"--since {previous}: not a pseudo-labeling or prediction output (no _run.json)")
    if not storage.exists(storage.join(previous, MANIFEST_FILE)):
        raise ValueError(f"--since {previous}: that run did not finish (no manifest.json); finish it first")
    if not storage.exists(storage.join(previous, KEYS_DIR)) and storage.list_files(
            storage.join(previous, "consensus"), ".parquet"):
        raise ValueError(f"--since {previous}: it has no content keys ({KEYS_DIR}/), being written by an attrpipe "
                         "without incremental labeling; label this catalog once without --since")
    differ = labeling_differences(prev, key)
    if differ and not relabel_all:
        raise ValueError(f"--since {previous}: it was labeled differently (differs in: {', '.join(differ)}); "
                         "its rows are not what this run would write. Pass --relabel-all to relabel every listing "
                         "(the counts still say what was new, changed and removed), or label without --since")
    return prev


def index_path(out: str, unit_id: str) -> str:
    return storage.join(out, SINCE_DIR, f"{unit_id}.parquet")


def read_index(out: str, unit_id: str) -> dict[str, tuple[str | None, str | None]]:
    """listing_id -> (previous key, previous unit) for one unit of an incremental run (empty: no listing ids)."""
    path = index_path(out, unit_id)
    if not storage.exists(path):
        return {}
    t = storage.read_parquet(path)
    return dict(zip(t.column("listing_id").to_pylist(),
                    zip(t.column("previous_key").to_pylist(), t.column("previous_unit").to_pylist())))


def previous_rows(previous: str, unit_id: str, listing_ids: set[str]) -> dict[str, list[dict]]:
    """The rows the previous output's unit holds for these listings, by shard (CARRIED_SHARDS, plus ``keys``), in
    the unit's order; only the files its marker names are read."""
    from attrpipe.pseudolabel.output import marker_path

    files = storage.read_json(marker_path(previous, unit_id))["files"]
    out: dict[str, list[dict]] = {}
    wanted = pa.array(sorted(listing_ids), pa.string())
    for name in (*CARRIED_SHARDS, KEYS_DIR):
        rel = files.get(name)
        if not rel:
            continue
        t = storage.read_parquet(storage.join(previous, rel))
        out[name] = t.filter(pc.is_in(t.column("listing_id"), value_set=wanted)).to_pylist()
    return out


def carry_over(previous: str, carried: list[dict]) -> dict[str, list[dict]]:
    """The rows of the carried-over listings (``{"listing_id", "previous_unit", "image_uris", "images_dropped"}``
    each), read from the previous output unit by unit: each row as it was, with the image URIs and the count of
    images past ``images.max_images`` as the new catalog has them (the used images' bytes are the same, the key says
    so; a URI may have moved, an image past the limit may have come or gone)."""
    by_unit: dict[str, dict[str, dict]] = {}
    for c in carried:
        by_unit.setdefault(c["previous_unit"], {})[c["listing_id"]] = c
    out: dict[str, list[dict]] = {name: [] for name in CARRIED_SHARDS}
    for unit_id in sorted(by_unit):
        rows = previous_rows(previous, unit_id, set(by_unit[unit_id]))
        for name in CARRIED_SHARDS:
            for r in rows.get(name, []):
                now = by_unit[unit_id][r["listing_id"]]
                for col in ("image_uris", "images_dropped"):
                    if col in r:
                        r[col] = now[col]
                out[name].append(r)
    return out


# --- the index (Ray Data) ---------------------------------------------------------------------------------------------


def _unit_ids(batch: dict, reading_key: dict | None) -> pa.Table:
    """The listing ids of one unit's input rows (a batch of one planned unit), as (listing_id, unit_id)."""
    from attrpipe.catalog_io import CatalogReading
    from attrpipe.pseudolabel.units import Unit, read_unit

    reading = CatalogReading.from_key(reading_key)
    ids, units = [], []
    for u in batch["unit"]:
        unit = Unit(**u)
        for r in read_unit(unit, ["listing_id"], reading):
            lid = r.get("listing_id")
            if "_error" not in r and isinstance(lid, str) and lid.strip():
                ids.append(lid)
                units.append(unit.unit_id)
    return pa.table({"listing_id": pa.array(ids, pa.string()), "unit_id": pa.array(units, pa.string())})


def _previous_keys(batch: pa.Table) -> pa.Table:
    units = [posixpath.basename(p).removesuffix(".parquet") for p in batch.column("path").to_pylist()]
    return pa.table({"listing_id": batch.column("listing_id"), "previous_key": batch.column("content_key"),
                     "previous_unit": pa.array(units, pa.string())})


def _removed(t: pa.Table) -> pa.Table:
    return pa.table({"removed": [t.column("unit_id").null_count]})


def _write_index(group: pa.Table, out: str) -> pa.Table:
    """One unit's index file (its rows of the join, sorted by listing id)."""
    from attrpipe.schemas import SINCE_SCHEMA

    unit_id = group.column("unit_id")[0].as_py()
    t = pa.table({"listing_id": group.column("listing_id"), "previous_key": group.column("previous_key"),
                  "previous_unit": group.column("previous_unit")}, schema=SINCE_SCHEMA).sort_by("listing_id")
    storage.write_parquet_atomic(index_path(out, unit_id), t)
    return pa.table({"unit_id": [unit_id], "listings": [len(t)]})


def build_index(previous: str, out: str, units: list, reading_key: dict | None) -> dict:
    """Write ``_since/<unit>.parquet`` for every unit of the new catalog: a full outer join, on Ray Data, of its
    listing ids with the previous output's keys (neither side is collected on the driver); ``_since/_index.json``
    last, with how many of the previous output's listings the new catalog no longer has. A rerun
    finds the index whole and reuses it."""
    import time

    import ray

    from attrpipe.pseudolabel.output import committed_files

    t0 = time.perf_counter()
    done = storage.join(out, SINCE_DIR, INDEX_FILE)
    if storage.exists(done):
        return storage.read_json(done)
    keys_files = committed_files(storage.join(previous, KEYS_DIR)) or []
    new = ray.data.from_items([{"unit": u.to_dict()} for u in units if u.error is None],
                              override_num_blocks=max(1, min(len(units), 200)))
    new = new.map_batches(_unit_ids, fn_kwargs={"reading_key": reading_key}, batch_size=1, batch_format="numpy")
    partitions = max(1, min(64, len(units) // 64))
    if keys_files:
        old = ray.data.read_parquet(keys_files, include_paths=True).select_columns(
            ["listing_id", "content_key", "path"])
        old = old.map_batches(_previous_keys, batch_format="pyarrow")
        joined = new.join(old, join_type="full_outer", num_partitions=partitions, on=("listing_id",)).materialize()
        removed = int(joined.map_batches(_removed, batch_format="pyarrow").sum("removed") or 0)
        present = joined.map_batches(lambda t: t.filter(pc.is_valid(t.column("unit_id"))), batch_format="pyarrow")
    else:  # the previous output labeled nothing
        removed = 0
        present = new.add_column("previous_key", lambda b: pa.nulls(len(b), pa.string()), batch_format="pyarrow")
        present = present.add_column("previous_unit", lambda b: pa.nulls(len(b), pa.string()),
                                     batch_format="pyarrow")
    # as many shuffle partitions as the data needs (Ray's default, 200, costs half a minute on a small catalog)
    written = present.groupby("unit_id", num_partitions=partitions).map_groups(
        _write_index, fn_kwargs={"out": out}, batch_format="pyarrow")
    index = {"since": previous, "removed": removed, "units_indexed": int(written.count()),
             "seconds": round(time.perf_counter() - t0, 2)}
    storage.write_json_atomic(done, index)
    return index
