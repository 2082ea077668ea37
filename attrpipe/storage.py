"""Local paths and URIs (``s3://...``) through pyarrow filesystems; atomic writes.

Atomic here means: a file is written under a hidden temporary name (``.tmp-...``, which pyarrow's dataset discovery
ignores) in the destination directory and then moved into place, so a reader never sees a half-written file under
its final name. On object stores the move is a copy + delete; completion is then marked by a separate marker file
written last, which is what readers trust (see attrpipe/pseudolabel/units.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import posixpath
import sys
import time
import uuid
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

__all__ = [
    "filesystem_for",
    "join",
    "exists",
    "makedirs",
    "list_files",
    "find_files",
    "read_bytes",
    "read_json",
    "write_json_atomic",
    "write_text_atomic",
    "write_bytes_atomic",
    "copy_tree",
    "write_parquet_atomic",
    "read_parquet",
    "remove_file",
    "fingerprint",
    "local_copy",
    "remove_tree",
    "locked",
]


def filesystem_for(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the filesystem-relative path of a local path or URI.

    ``s3://`` URIs take their credentials, region and endpoint from the standard AWS settings, which pyarrow reads:
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or an instance/pod role, or ~/.aws), AWS_DEFAULT_REGION, and
    AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) for an S3-compatible store such as MinIO (tests/test_s3.py runs
    against moto's server that way). Ray workers read the same variables, so set them where Ray starts (the pods'
    environment on a cluster), not only in the driver (docs/cluster.md).
    """
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


def find_files(path: str, name: str) -> list[str]:
    """Every file called ``name`` anywhere below ``path`` (local or URI), as full paths/URIs, sorted."""
    fs, p = filesystem_for(path)
    if fs.get_file_info(p).type != pafs.FileType.Directory:
        return []
    hits = [i.path for i in fs.get_file_info(pafs.FileSelector(p, recursive=True))
            if i.type == pafs.FileType.File and i.base_name == name]
    rel = [posixpath.relpath(h, p.rstrip("/") or "/") for h in hits]
    return sorted(join(path, r) for r in rel)


def _write_atomic(dest: str, data: bytes) -> None:
    fs, p = filesystem_for(dest)
    parent = posixpath.dirname(p)
    fs.create_dir(parent, recursive=True)
    tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(p)}")
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, p)


def write_bytes_atomic(dest: str, data: bytes) -> None:
    _write_atomic(dest, data)


def write_text_atomic(dest: str, text: str) -> None:
    _write_atomic(dest, text.encode("utf-8"))


def copy_tree(src: str, dest: str) -> None:
    """Copy a directory (local or URI) to another place (local or URI)."""
    sfs, sp = filesystem_for(src)
    dfs, dp = filesystem_for(dest)
    dfs.create_dir(dp, recursive=True)
    pafs.copy_files(sp, dp, source_filesystem=sfs, destination_filesystem=dfs)


def write_json_atomic(dest: str, obj: Any) -> None:
    _write_atomic(dest, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


@contextlib.contextmanager
def locked(path: str, *, what: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the ``with`` block: ``<path>.lock`` (flock; released when the block ends
    or the process dies). Processes on this machine that lock the same path run one after another: a summary read,
    changed and written again; a loop run or a pseudo-labeling output, where the second process, once the first has
    ended, finds its stages done and skips them (two study commands of one seed share its seed SFT that way). A
    process that has to wait says so on stderr, naming ``what``. A URI is not locked: an object store has no such
    lock, so its writers must not overlap."""
    if "://" in path:
        yield
        return
    lock = posixpath.abspath(path) + ".lock"
    os.makedirs(posixpath.dirname(lock), exist_ok=True)
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"attrpipe: {what or path}: another process is at work on it; waiting for it to end ({lock})",
                  file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# What pyarrow raises when an object store answers a read of a small object with an error (500 InternalError,
# 503 SlowDown): the AWS SDK writes the error's XML body into the read buffer, which is sized to the object; a body
# larger than the object overflows it, and the SDK reports INTERNAL_FAILURE, which it does not retry (the status is
# lost). Objects smaller than an error body (a few hundred bytes: markers, progress files) hit it; see
# https://github.com/apache/doris/pull/66557 for the SDK's side. read_bytes retries it.
_SMALL_READ_ERROR = "Failed to flush response stream"
_READ_ATTEMPTS = 5


def read_bytes(path: str) -> bytes:
    """A whole file (local or URI). A read that the object store answered with an error the S3 client did not retry
    (see _SMALL_READ_ERROR) is tried again, up to 5 times with a growing pause; anything else raises at once."""
    fs, p = filesystem_for(path)
    attempt = 1
    while True:
        try:
            with fs.open_input_stream(p) as f:
                return f.read()
        except OSError as e:
            if _SMALL_READ_ERROR not in str(e) or attempt >= _READ_ATTEMPTS:
                raise
        time.sleep(0.05 * 2**attempt)
        attempt += 1


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path).decode("utf-8"))


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


# Files above this size are fingerprinted by their size, head and tail, not read whole (a 3B model is 7 GB).
_WHOLE_FILE_LIMIT = 64 << 20
_EDGE = 4 << 20


def fingerprint(path: str | None) -> str | None:
    """A short content hash of a model or adapter directory's JSON and safetensors files, local or URI (None for
    None). A name that is neither (a hub id) is its own identity. Big weight files contribute their size and their
    first and last 4 MiB, which any retraining changes."""
    if path is None:
        return None
    fs, p = filesystem_for(path)
    if "://" not in path and fs.get_file_info(p).type != pafs.FileType.Directory:
        return hashlib.sha256(str(path).encode()).hexdigest()[:16]
    infos = [i for i in fs.get_file_info(pafs.FileSelector(p, recursive=False))
             if i.type == pafs.FileType.File and i.base_name.endswith((".json", ".safetensors"))]
    if not infos:
        raise FileNotFoundError(f"{path!r} holds no .json or .safetensors files to fingerprint")
    h = hashlib.sha256()
    for info in sorted(infos, key=lambda i: i.base_name):
        h.update(info.base_name.encode() + b"\0" + str(info.size).encode() + b"\0")
        if info.size <= _WHOLE_FILE_LIMIT:
            h.update(read_bytes(join(path, info.base_name)))
            continue
        with fs.open_input_file(info.path) as f:
            h.update(f.read(_EDGE))
            f.seek(info.size - _EDGE)
            h.update(f.read(_EDGE))
    return h.hexdigest()[:16]


def _cache_root() -> str:
    return os.environ.get("ATTRPIPE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "attrpipe")


def local_copy(path: str) -> str:
    """A local directory holding what ``path`` holds: ``path`` itself when it is local; for a URI (an adapter or a
    model on object storage), a copy under ``$ATTRPIPE_CACHE/remote`` (default ~/.cache/attrpipe/remote) keyed by the
    URI and its files' names, sizes and modification times. The copy is made under a temporary name and renamed, so
    concurrent workers never read half a copy, and a changed remote directory is fetched again."""
    if "://" not in path:
        return path
    fs, p = filesystem_for(path)
    files = sorted((i.path, i.size, i.mtime_ns) for i in fs.get_file_info(pafs.FileSelector(p, recursive=True))
                   if i.type == pafs.FileType.File)
    if not files:
        raise FileNotFoundError(f"{path!r} holds no files")
    key = hashlib.sha256(json.dumps([path, files]).encode()).hexdigest()[:24]
    dest = os.path.join(_cache_root(), "remote", key)
    if os.path.isdir(dest):
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.tmp-{uuid.uuid4().hex}"
    os.makedirs(tmp)  # pyarrow creates the sub-directories it copies into, not the destination itself
    pafs.copy_files(p, tmp, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    try:
        os.rename(tmp, dest)
    except OSError:  # another worker finished the same copy first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return dest
