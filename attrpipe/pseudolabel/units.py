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
from attrpipe.catalog_io import CatalogReading, canonical_row, catalog_files, jsonl_offsets, partition_of, read_jsonl

__all__ = ["Unit", "plan_units", "read_unit", "find_duplicate_ids", "read_labels", "iter_rows"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_DEFAULT = CatalogReading()


@dataclass(frozen=True)
class Unit:
    unit_id: str
    file: str  # full path or URI of the catalog file (Parquet or JSON lines)
    start: int  # first row (inclusive)
    stop: int  # last row (exclusive)
    error: str | None = None  # the file could not be opened: the unit is that one quarantined file
    name: str | None = None  # the file relative to the catalog, when not its base name (a hive partition's file)
    offset: int | None = None  # JSON lines: the byte offset of row ``start``

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def source_name(self) -> str:
        """How quarantine rows name the file (``<name>#<row>``)."""
        return self.name or posixpath.basename(self.file)


def read_labels(test_path: str, reading: CatalogReading = _DEFAULT) -> dict[str, dict[str, str]]:
    """listing_id -> {attribute: value} from a labeled set (reads only two columns)."""
    labels: dict[str, dict[str, str]] = {}
    for r in iter_rows(test_path, ["listing_id", "labels"], reading):
        if "_error" in r or r.get("listing_id") is None:
            continue
        labels[r["listing_id"]] = dict(r.get("labels") or {})
    return labels


def _open(path: str) -> pq.ParquetFile:
    fs, p = storage.filesystem_for(path)
    return pq.ParquetFile(fs.open_input_file(p))


def _stem(name: str) -> str:
    for suffix in (".parquet", ".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _SAFE.sub("_", name)


def _count(f, listings_per_unit: int) -> tuple[int, list[int] | None]:
    """Rows of a catalog file, and for JSON lines the byte offset of every unit's first row."""
    if f.format == "jsonl":
        return jsonl_offsets(f.path, listings_per_unit)
    return _open(f.path).metadata.num_rows, None


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
        stem = _stem(f.name)
        name = None if f.name == posixpath.basename(f.path) else f.name
        try:
            n, offsets = _count(f, listings_per_unit)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError: not a Parquet file
            # Its rows cannot be counted: the file is one input of the run, quarantined whole (one row).
            units.append(Unit(f"{stem}-unreadable", f.path, 0, 1, error=f"{type(e).__name__}: {e}"[:500], name=name))
            if remaining is not None:
                remaining -= 1
                if remaining <= 0:
                    break
            continue
        if remaining is not None:
            n = min(n, remaining)
            remaining -= n
        for k, start in enumerate(range(0, n, listings_per_unit)):
            stop = min(n, start + listings_per_unit)
            units.append(Unit(f"{stem}-{start:010d}", f.path, start, stop, name=name,
                              offset=None if offsets is None else offsets[k]))
        if remaining == 0:
            break
    ids = [u.unit_id for u in units]
    if len(set(ids)) != len(ids):
        raise ValueError(f"catalog {path!r} has files whose names collide after sanitising")
    return units


def read_unit(unit: Unit, columns: list[str] | None = None, reading: CatalogReading = _DEFAULT) -> Iterator[dict]:
    """The unit's rows as dicts under attrpipe's column names (attrpipe.catalog_io.canonical_row), each with
    ``_source`` = ``<file name>#<row>``; reads only the columns (and, in Parquet, the row groups) needed.

    What cannot be read is still yielded, as rows carrying ``_error`` (quarantined as ``unreadable_catalog_rows``):
    a whole file that cannot be opened as one row (source ``<file name>``), a corrupt Parquet row group as one row
    per row it holds (the footer knows how many), a JSON line that is not a JSON object as its row."""
    name = unit.source_name
    if unit.error is not None:
        yield {"_source": name, "_error": unit.error}
        return
    partition = partition_of(unit.name or "")
    if unit.file.endswith((".jsonl", ".jsonl.gz")):
        for i, row in enumerate(read_jsonl(unit.file, unit.offset or 0, unit.stop - unit.start)):
            source = f"{name}#{unit.start + i}"
            if isinstance(row, Exception):
                yield {"_source": source, "_error": f"line of row {unit.start + i}: {row}"[:500]}
                continue
            try:
                row = canonical_row(row, reading, partition)
            except ValueError as e:
                yield {"_source": source, "listing_id": row.get("listing_id"), "_error": str(e)[:500]}
                continue
            yield {**row, "_source": source}
        return
    pf = _open(unit.file)
    available = set(pf.schema_arrow.names)
    cols = None
    if columns:
        cols = [c for c in dict.fromkeys(reading.file_column(c) for c in columns) if c in available]
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
            source = f"{name}#{first + lo + i}"
            try:
                row = canonical_row(row, reading, partition)
            except ValueError as e:
                yield {"_source": source, "_error": str(e)[:500]}
                continue
            row["_source"] = source
            yield row


def iter_rows(path: str, columns: list[str], reading: CatalogReading = _DEFAULT) -> Iterator[dict]:
    """Every row of a catalog or labeled set, ``columns`` only (unreadable rows carry ``_error``), in file order."""
    for unit in plan_units(path, 4096):
        yield from read_unit(unit, columns, reading)


def _listing_id_batches(path: str, reading: CatalogReading):
    for f in catalog_files(path):
        if f.format == "jsonl":
            try:
                yield [r["listing_id"] for r in read_unit(Unit("ids", f.path, 0, 1 << 62, name=f.name, offset=0),
                                                          ["listing_id"], reading)
                       if "_error" not in r and isinstance(r.get("listing_id"), str)]
            except (OSError, ValueError):
                pass  # an unreadable file: its unit quarantines it (plan_units)
            continue
        try:
            pf = _open(f.path)
        except (OSError, ValueError):
            continue  # an unreadable file: its unit quarantines it (plan_units)
        col = reading.file_column("listing_id")
        partition = partition_of(f.name)
        if col not in pf.schema_arrow.names:
            if col in partition:  # a listing id per partition: every row of the file has it
                yield [partition[col]] * pf.metadata.num_rows if partition[col] is not None else []
            continue
        for g in range(pf.metadata.num_row_groups):
            try:
                ids = pf.read_row_group(g, columns=[col]).column(0).to_pylist()
            except (OSError, ValueError):
                continue  # a corrupt row group: its rows are quarantined by read_unit
            yield [str(lid) if isinstance(lid, int) and not isinstance(lid, bool) else lid
                   for lid in ids if lid is not None]


def find_duplicate_ids(path: str, reading: CatalogReading = _DEFAULT) -> set[str]:
    """Listing ids that occur more than once in the catalog (reads only the ``listing_id`` column).

    Memory is 8 bytes per listing, not a set of every id: pass 1 keeps a 64-bit hash per id and finds the hashes
    seen twice; pass 2 counts exactly only the ids whose hash is one of those (hash collisions are resolved there).
    """
    import numpy as np

    chunks = [np.fromiter((hash(lid) for lid in ids), dtype=np.int64, count=len(ids))
              for ids in _listing_id_batches(path, reading)]
    if not chunks:
        return set()
    hashes = np.sort(np.concatenate(chunks))
    del chunks
    repeated = set(hashes[1:][hashes[1:] == hashes[:-1]].tolist())
    del hashes
    if not repeated:
        return set()
    counts: dict[str, int] = {}
    for ids in _listing_id_batches(path, reading):
        for lid in ids:
            if hash(lid) in repeated:
                counts[lid] = counts.get(lid, 0) + 1
    return {lid for lid, n in counts.items() if n > 1}
