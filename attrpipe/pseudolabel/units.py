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

__all__ = ["Unit", "plan_units", "read_unit", "find_duplicate_ids", "catalog_files"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Unit:
    unit_id: str
    file: str  # full path or URI of the Parquet file
    start: int  # first row (inclusive)
    stop: int  # last row (exclusive)

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
        n = _open(f).metadata.num_rows
        if remaining is not None:
            n = min(n, remaining)
            remaining -= n
        stem = _SAFE.sub("_", posixpath.basename(f).removesuffix(".parquet"))
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
    """The unit's rows as dicts, each with ``_source`` = ``<file name>#<row>``; reads only the row groups needed."""
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
    name = posixpath.basename(unit.file)
    for g, first in groups:
        table: pa.Table = pf.read_row_group(g, columns=cols)
        lo, hi = max(unit.start, first) - first, min(unit.stop, first + table.num_rows) - first
        for i, row in enumerate(table.slice(lo, hi - lo).to_pylist()):
            row["_source"] = f"{name}#{first + lo + i}"
            yield row


def _listing_id_batches(path: str):
    for f in catalog_files(path):
        pf = _open(f)
        if "listing_id" not in pf.schema_arrow.names:
            continue
        for batch in pf.iter_batches(columns=["listing_id"], batch_size=65536):
            yield [lid for lid in batch.column(0).to_pylist() if lid is not None]


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
