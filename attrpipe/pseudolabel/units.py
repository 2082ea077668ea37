"""Work units: the input catalog cut into fixed row ranges of its Parquet files.

A unit is the grain of streaming, of atomic output and of resume. Its id depends only on the file name and the row
range, so a rerun of the same command plans the same units, skips those whose completion marker exists, and
produces exactly the rows of an uninterrupted run. For each finished unit the output directory holds::

    consensus/<unit>.parquet   pairs/<unit>.parquet   quarantine/<unit>.parquet   _units/<unit>.json

The marker (``_units/<unit>.json``, with the unit's counts) is written last; a unit without a marker is redone
and its stray files are overwritten, so a shard left behind by a kill is never counted or read as data.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from attrpipe import storage

__all__ = ["Unit", "plan_units", "read_unit", "find_duplicate_ids", "catalog_files", "read_labels"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Unit:
    unit_id: str
    file: str  # full path or URI of the Parquet file
    start: int  # first row (inclusive)
    stop: int  # last row (exclusive)
    error: str | None = None  # the file could not be opened as Parquet: the unit is that one quarantined file

    def to_dict(self) -> dict:
        return asdict(self)


def catalog_files(path: str) -> list[str]:
    """The Parquet files of a catalog: the file itself, or the visible ``*.parquet`` files of a directory."""
    if path.endswith(".parquet") and storage.exists(path):
        return [path]
    files = storage.list_files(path, ".parquet")
    if not files:
        raise FileNotFoundError(f"no Parquet files at {path!r}")
    return files


def read_labels(test_path: str) -> dict[str, dict[str, str]]:
    """listing_id -> {attribute: value} from a labeled set (reads only two columns)."""
    labels: dict[str, dict[str, str]] = {}
    for f in catalog_files(test_path):
        fs, p = storage.filesystem_for(f)
        for r in pq.read_table(p, filesystem=fs, columns=["listing_id", "labels"]).to_pylist():
            labels[r["listing_id"]] = dict(r["labels"] or {})
    return labels


def _open(path: str) -> pq.ParquetFile:
    fs, p = storage.filesystem_for(path)
    return pq.ParquetFile(fs.open_input_file(p))


def plan_units(path: str, listings_per_unit: int, limit: int | None = None) -> list[Unit]:
    """The catalog's units, in file and row order; ``limit``: only the first ``limit`` rows of the catalog (a pool of
    that size: the same rows, and units with the same ids, as the larger pool's first ones)."""
    if listings_per_unit < 1:
        raise ValueError("listings_per_unit must be >= 1")
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    units = []
    remaining = limit
    for f in catalog_files(path):
        stem = _SAFE.sub("_", posixpath.basename(f).removesuffix(".parquet"))
        try:
            n = _open(f).metadata.num_rows
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError: not a Parquet file
            # Its rows cannot be counted: the file is one input of the run, quarantined whole (one row).
            units.append(Unit(f"{stem}-unreadable", f, 0, 1, error=f"{type(e).__name__}: {e}"[:500]))
            if remaining is not None:
                remaining -= 1
                if remaining <= 0:
                    break
            continue
        if remaining is not None:
            n = min(n, remaining)
            remaining -= n
        for start in range(0, n, listings_per_unit):
            stop = min(n, start + listings_per_unit)
            units.append(Unit(f"{stem}-{start:010d}", f, start, stop))
        if remaining == 0:
            break
    ids = [u.unit_id for u in units]
    if len(set(ids)) != len(ids):
        raise ValueError(f"catalog {path!r} has Parquet files whose names collide after sanitising")
    return units


def read_unit(unit: Unit, columns: list[str] | None = None) -> Iterator[dict]:
    """The unit's rows as dicts, each with ``_source`` = ``<file name>#<row>``; reads only the row groups needed.

    What cannot be read is still yielded, as rows carrying ``_error`` (quarantined as ``unreadable_catalog_rows``):
    a whole file that is not Parquet as one row (source ``<file name>``), a corrupt row group as one row per row it
    holds (the footer knows how many)."""
    name = posixpath.basename(unit.file)
    if unit.error is not None:
        yield {"_source": name, "_error": unit.error}
        return
    pf = _open(unit.file)
    available = set(pf.schema_arrow.names)
    cols = [c for c in columns if c in available] if columns else None
    offset = 0
    groups = []
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if offset < unit.stop and offset + n > unit.start:
            groups.append((g, offset))
        offset += n
    for g, first in groups:
        n = pf.metadata.row_group(g).num_rows
        lo, hi = max(unit.start, first) - first, min(unit.stop, first + n) - first
        try:
            table: pa.Table = pf.read_row_group(g, columns=cols)
        except (OSError, ValueError) as e:
            for i in range(lo, hi):
                yield {"_source": f"{name}#{first + i}", "_error": f"row group {g}: {type(e).__name__}: {e}"[:500]}
            continue
        for i, row in enumerate(table.slice(lo, hi - lo).to_pylist()):
            row["_source"] = f"{name}#{first + lo + i}"
            yield row


def _listing_id_batches(path: str):
    for f in catalog_files(path):
        try:
            pf = _open(f)
        except (OSError, ValueError):
            continue  # an unreadable file: its unit quarantines it (plan_units)
        if "listing_id" not in pf.schema_arrow.names:
            continue
        for g in range(pf.metadata.num_row_groups):
            try:
                ids = pf.read_row_group(g, columns=["listing_id"]).column(0).to_pylist()
            except (OSError, ValueError):
                continue  # a corrupt row group: its rows are quarantined by read_unit
            yield [lid for lid in ids if lid is not None]


def find_duplicate_ids(path: str) -> set[str]:
    """Listing ids that occur more than once in the catalog (reads only the ``listing_id`` column).

    Memory is 8 bytes per listing, not a set of every id: pass 1 keeps a 64-bit hash per id and finds the hashes
    seen twice; pass 2 counts exactly only the ids whose hash is one of those (hash collisions are resolved there).
    """
    import numpy as np

    chunks = [np.fromiter((hash(lid) for lid in ids), dtype=np.int64, count=len(ids))
              for ids in _listing_id_batches(path)]
    if not chunks:
        return set()
    hashes = np.sort(np.concatenate(chunks))
    del chunks
    repeated = set(hashes[1:][hashes[1:] == hashes[:-1]].tolist())
    del hashes
    if not repeated:
        return set()
    counts: dict[str, int] = {}
    for ids in _listing_id_batches(path):
        for lid in ids:
            if hash(lid) in repeated:
                counts[lid] = counts.get(lid, 0) + 1
    return {lid for lid, n in counts.items() if n > 1}
