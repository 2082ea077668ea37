"""Reading catalogs and labeled sets in the shapes real exports come in (docs/data-format.md).

- **Files**: Parquet (``*.parquet``) and JSON lines (``*.jsonl``, ``*.jsonl.gz``), a file or a directory of them.
- **Hive partitions**: below a directory, files in ``key=value`` directories (``category=shoe/part-0.parquet``)
  belong to the catalog, and each ``key`` is a column of their rows with the (URI-decoded) ``value`` as a string;
  a column the file has itself wins. Hidden (``.``, ``_``) files and directories are skipped, as are files in
  directories that are not ``key=value``.
- **Column names**: ``data.columns`` maps attrpipe's names to the file's (``listing_id: product_id``); a partition key
  may be named there too (``vertical: category``).
- **Integer listing ids** are read as their decimal strings.

:func:`canonical_row` is the one place a row read from a file becomes a row under attrpipe's names; the pipeline's
unit reader (attrpipe.pseudolabel.units), the pre-flight checks and training's reader all go through it. Vertical
names are matched to the taxonomy where the rows are validated (``Taxonomy.match_vertical``), with
``data.match_vertical_names``.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
from dataclasses import dataclass
from typing import Iterator, Mapping
from urllib.parse import unquote

from pyarrow import fs as pafs

from attrpipe import storage

__all__ = ["SUFFIXES", "CatalogReading", "CatalogFile", "file_format", "catalog_files", "partition_of",
           "canonical_row", "jsonl_offsets", "read_jsonl"]

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def file_format(path: str) -> str | None:
    """``parquet``, ``jsonl`` or None (not a catalog file) from the name."""
    if path.endswith(".parquet"):
        return "parquet"
    if path.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    return None


@dataclass(frozen=True)
class CatalogReading:
    """How a catalog's rows map to attrpipe's columns (``data.columns``) and whether vertical names that differ from
    the taxonomy's only by case or surrounding spaces are matched (``data.match_vertical_names``)."""

    columns: tuple[tuple[str, str], ...] = ()  # (attrpipe name, the file's column name)
    match_vertical_names: bool = True

    @classmethod
    def from_conf(cls, cfg) -> "CatalogReading":
        d = cfg.data  # .get: a run's saved config.yaml may predate these keys
        return cls(tuple(sorted((str(k), str(v)) for k, v in (d.get("columns") or {}).items())),
                   bool(d.get("match_vertical_names", True)))

    @classmethod
    def from_key(cls, entry: Mapping | None) -> "CatalogReading":
        """From a run key's ``reading`` entry (:meth:`key_entry`); absent: the defaults."""
        if not entry:
            return cls()
        return cls(tuple(sorted((str(k), str(v)) for k, v in (entry.get("columns") or {}).items())),
                   bool(entry.get("match_vertical_names", True)))

    def key_entry(self) -> dict | None:
        """What a run key records of it: None for the defaults (so the keys of runs that use them do not change)."""
        if self == CatalogReading():
            return None
        return {"columns": dict(self.columns), "match_vertical_names": self.match_vertical_names}

    def file_column(self, name: str) -> str:
        """The file's column that holds attrpipe's column ``name``."""
        return dict(self.columns).get(name, name)


@dataclass(frozen=True)
class CatalogFile:
    path: str  # full path or URI
    name: str  # relative to the catalog path (its base name when the path is the file)

    @property
    def format(self) -> str:
        return file_format(self.path) or "parquet"


def partition_of(name: str) -> dict[str, str | None]:
    """The hive partition values of a file's relative name: ``category=shoe/part-0.parquet`` -> {category: shoe}."""
    out: dict[str, str | None] = {}
    for segment in name.split("/")[:-1]:
        key, sep, value = segment.partition("=")
        if sep and key:
            value = unquote(value)
            out[unquote(key)] = None if value == _HIVE_NULL else value
    return out


def _hive_dir(rel_dir: str) -> bool:
    return all("=" in s and not s.startswith((".", "_")) and s.split("=", 1)[0] for s in rel_dir.split("/"))


def catalog_files(path: str) -> list[CatalogFile]:
    """The catalog's files: the file itself, or the visible Parquet and JSON lines files of a directory and of its
    hive partition directories, sorted by relative name."""
    fs, p = storage.filesystem_for(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.File and file_format(path):
        return [CatalogFile(path, posixpath.basename(p))]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no Parquet or JSON lines files at {path!r}")
    base = p.rstrip("/")
    found = []
    for i in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if i.type != pafs.FileType.File or not file_format(i.base_name) or i.base_name.startswith((".", "_")):
            continue
        rel = posixpath.relpath(i.path, base)
        rel_dir = posixpath.dirname(rel)
        if rel_dir and not _hive_dir(rel_dir):
            continue
        found.append(CatalogFile(storage.join(path, rel), rel))
    if not found:
        raise FileNotFoundError(f"no Parquet or JSON lines files at {path!r}")
    return sorted(found, key=lambda f: f.name)


def canonical_row(row: dict, reading: CatalogReading, partition: Mapping[str, str | None] | None = None) -> dict:
    """A row as read from a file (its own column names; partition values added) under attrpipe's names. Columns the
    mapping does not name keep their names. Values become what the pipeline expects:

    - an integer listing id: its decimal string;
    - ``labels``, ``reasoning``, ``seller_attributes`` read as JSON objects: their keys with a value (a JSON reader
      that types a column as a struct gives every row every key, null where the row has none);
    - ``image_bytes`` as strings (JSON has no bytes): base64, decoded; a :class:`ValueError` if one is not.
    """
    if partition:
        row = {**{k: v for k, v in partition.items() if k not in row}, **row}
    if reading.columns:
        renamed = dict(row)
        for name, col in reading.columns:
            if col != name:
                renamed.pop(col, None)
                renamed[name] = row.get(col)
        row = renamed
    lid = row.get("listing_id")
    if isinstance(lid, int) and not isinstance(lid, bool):
        row["listing_id"] = str(lid)
    for name in ("labels", "reasoning", "seller_attributes"):
        if isinstance(row.get(name), dict):
            row[name] = {k: v for k, v in row[name].items() if v is not None}
    data = row.get("image_bytes")
    if data and any(isinstance(b, str) for b in data):
        try:
            row["image_bytes"] = [base64.b64decode(b, validate=True) if isinstance(b, str) else b for b in data]
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"image_bytes: not base64 ({e})") from None
    return row


# --- JSON lines ---------------------------------------------------------------------------------------------------

_CHUNK = 1 << 20


def _lines(path: str, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(byte offset in the decompressed stream, line) of every line from ``offset``; a ``.gz`` file is decompressed
    from its start (skipping ``offset`` bytes), a plain one is read from ``offset``."""
    fs, p = storage.filesystem_for(path)
    if path.endswith(".gz"):
        stream = fs.open_input_stream(p)  # decompressed, by the extension
        skip = offset
        while skip > 0:
            got = len(stream.read(min(skip, _CHUNK)))
            if not got:
                break
            skip -= got
    else:
        stream = fs.open_input_file(p)
        stream.seek(offset)
    with stream:
        pos, rest = offset, b""
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            buf = rest + chunk
            start = 0
            while True:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                yield pos, buf[start:nl]
                pos += nl + 1 - start
                start = nl + 1
            rest = buf[start:]
        if rest:
            yield pos, rest


def jsonl_offsets(path: str, every: int) -> tuple[int, list[int]]:
    """The number of rows (lines that are not blank) of a JSON lines file and the byte offset of every ``every``-th
    row (row 0, every, 2 x every, ...): where each unit starts."""
    n, offsets = 0, []
    for pos, line in _lines(path):
        if not line.strip():
            continue
        if n % every == 0:
            offsets.append(pos)
        n += 1
    return n, offsets


def read_jsonl(path: str, offset: int, count: int) -> Iterator[dict | Exception]:
    """``count`` rows from the row starting at byte ``offset``: each a dict, or the error that kept a line from being
    one (not JSON, or not a JSON object)."""
    got = 0
    for _, line in _lines(path, offset):
        if got >= count:
            return
        if not line.strip():
            continue
        got += 1
        try:
            row = json.loads(line)
        except ValueError as e:
            yield ValueError(f"not JSON: {e}")
            continue
        yield row if isinstance(row, dict) else ValueError(f"a JSON {type(row).__name__}, not an object")
