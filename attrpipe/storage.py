"""Local paths and URIs (``s3://...``) through pyarrow filesystems; atomic writes.

Atomic here means: a file is written under a hidden temporary name (``.tmp-...``, which pyarrow's dataset discovery
ignores) in the destination directory and then moved into place, so a reader never sees a half-written file under
its final name. On object stores the move is a copy + delete; completion is then marked by a separate marker file
written last, which is what readers trust (see attrpipe/pseudolabel/units.py).
"""

from __future__ import annotations

import io
import json
import posixpath
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

__all__ = [
    "filesystem_for",
    "join",
    "exists",
    "makedirs",
    "list_files",
    "read_json",
    "write_json_atomic",
    "write_parquet_atomic",
    "read_parquet",
    "remove_file",
    "remove_tree",
]


def filesystem_for(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the filesystem-relative path of a local path or URI."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), posixpath.abspath(path)


def join(base: str, *parts: str) -> str:
    if "://" in base:
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.join(rest, *parts)}"
    return posixpath.join(base, *parts)


def exists(path: str) -> bool:
    fs, p = filesystem_for(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def makedirs(path: str) -> None:
    fs, p = filesystem_for(path)
    fs.create_dir(p, recursive=True)


def list_files(path: str, suffix: str = "") -> list[str]:
    """Visible files directly under ``path`` (hidden and temporary files excluded), sorted, as full paths/URIs."""
    fs, p = filesystem_for(path)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=False))
    names = sorted(
        i.base_name
        for i in infos
        if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_")) and i.base_name.endswith(suffix)
    )
    return [join(path, n) for n in names]


def _write_atomic(dest: str, data: bytes) -> None:
    fs, p = filesystem_for(dest)
    parent = posixpath.dirname(p)
    fs.create_dir(parent, recursive=True)
    tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(p)}")
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, p)


def write_json_atomic(dest: str, obj: Any) -> None:
    _write_atomic(dest, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: str) -> Any:
    fs, p = filesystem_for(path)
    with fs.open_input_stream(p) as f:
        return json.loads(f.read().decode("utf-8"))


def write_parquet_atomic(dest: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    _write_atomic(dest, buf.getvalue())


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file or a directory of them (hidden/temporary files ignored)."""
    fs, p = filesystem_for(path)
    return pq.read_table(p, filesystem=fs, columns=columns)


def remove_file(path: str) -> None:
    """Remove a file if it exists."""
    fs, p = filesystem_for(path)
    if fs.get_file_info(p).type == pafs.FileType.File:
        fs.delete_file(p)


def remove_tree(path: str) -> None:
    fs, p = filesystem_for(path)
    if fs.get_file_info(p).type != pafs.FileType.NotFound:
        fs.delete_dir(p)
