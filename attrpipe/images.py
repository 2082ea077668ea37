"""Load, validate and resize listing images. Every failure is an :class:`ImageError` with a stable reason code.

Reasons (stored as-is in quarantine rows):

- ``bad_uri``          empty URI, a relative path with ``..``, or a scheme not in ``images.allowed_schemes``
- ``missing``          the file or object does not exist
- ``too_many_bytes``   encoded size above ``images.max_bytes``
- ``not_an_image``     bytes that no image decoder recognises
- ``too_many_pixels``  width * height above ``images.max_pixels`` (checked from the header, before decoding)
- ``truncated``        a recognised image whose data ends early or is corrupt
- ``http_status``, ``timeout``, ``http_redirects``, ``private_host``, ``host_not_allowed``, ``unreachable``: an
  ``http(s)://`` image that could not be fetched (attrpipe/http_images.py says when each applies)

Decoded images are EXIF-transposed, converted to RGB (alpha composited on white, palette/CMYK/16-bit converted)
and resized to ``size x size``.
"""

from __future__ import annotations

import io
import posixpath
import warnings
from concurrent.futures import Future
from urllib.parse import urlparse

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from attrpipe.http_images import FetchError, fetcher_for, is_http

__all__ = ["ImageError", "resolve_uri", "read_bytes", "fetched", "check_image", "decode_image", "load_image"]

ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def resolve_uri(uri: str, root: str | None, allowed_schemes: tuple[str, ...] | list[str]) -> str:
    """Resolve an image URI against the catalog root; refuse ``..`` and schemes that are not allowed."""
    if not isinstance(uri, str) or not uri.strip():
        raise ImageError("bad_uri", "empty image URI")
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower() if len(parsed.scheme) > 1 else ""  # "C:" style drive letters are not schemes
    if scheme and scheme != "file":
        if scheme not in allowed_schemes:
            raise ImageError("bad_uri", f"scheme {scheme!r} is not allowed ({', '.join(allowed_schemes)})")
        if ".." in parsed.path.split("/"):
            raise ImageError("bad_uri", f"'..' in {uri!r}")
        return uri
    if "file" not in allowed_schemes:
        raise ImageError("bad_uri", "local files are not allowed (add 'file' to images.allowed_schemes)")
    path = parsed.path if scheme == "file" else uri
    if ".." in path.replace("\\", "/").split("/"):
        raise ImageError("bad_uri", f"'..' in {uri!r}")
    if posixpath.isabs(path) or root is None:
        return path
    return posixpath.join(root.rstrip("/"), path)


def read_bytes(location: str, max_bytes: int, http=None) -> bytes:
    """Read an image's bytes from a local path or any URI pyarrow's filesystems understand (attrpipe/storage.py:
    the same filesystems, credentials and endpoint as the catalogs and outputs), or an ``http(s)://`` URL through
    the process's pooled session (attrpipe/http_images.py; ``http``: its :class:`HttpSettings`)."""
    from pyarrow import fs as pafs

    from attrpipe.storage import filesystem_for

    if is_http(location):
        if http is None:
            raise ImageError("bad_uri", f"{location}: no images.http settings to fetch it with")
        return fetched(fetcher_for(http).submit(location, max_bytes))

    try:
        filesystem, path = filesystem_for(location)
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ImageError("missing", location)
        if info.type != pafs.FileType.File:
            raise ImageError("missing", f"{location} is not a file")
        if info.size is not None and info.size > max_bytes:
            raise ImageError("too_many_bytes", f"{info.size} > {max_bytes}")
        with filesystem.open_input_stream(path) as f:
            data = f.read(max_bytes + 1)
    except ImageError:
        raise
    except (OSError, ValueError) as e:
        raise ImageError("missing", f"{location}: {e}") from None
    if len(data) > max_bytes:
        raise ImageError("too_many_bytes", f"> {max_bytes}")
    return data


def fetched(future: Future) -> bytes:
    """The bytes of an ``http(s)://`` fetch started with :meth:`attrpipe.http_images.HttpFetcher.submit` (waits for
    it); its failure as an :class:`ImageError` of the same reason."""
    try:
        return future.result()
    except FetchError as e:
        raise ImageError(e.reason, e.detail) from None


def check_image(data: bytes, *, max_pixels: int, max_bytes: int) -> tuple[Image.Image, str]:
    """Validate one encoded image as every reader does: the byte cap, the header (format and size, the pixel cap
    checked before decoding), then the whole decode (a truncated or corrupt body) and the EXIF orientation. Returns
    the decoded, upright image (not converted, not resized) and its format (``JPEG``, ``PNG``, ...)."""
    if len(data) > max_bytes:
        raise ImageError("too_many_bytes", f"{len(data)} > {max_bytes}")
    if not data:
        raise ImageError("not_an_image", "0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError("not_an_image", "unrecognised image format") from None
        except (OSError, SyntaxError, ValueError) as e:  # recognised, but the header itself is cut or corrupt
            raise ImageError("truncated", str(e)) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError("too_many_pixels", str(e)) from None
        fmt = img.format or "unknown"
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError("too_many_pixels", f"{w}x{h} > {max_pixels} pixels")
        if w < 1 or h < 1:
            raise ImageError("not_an_image", f"{w}x{h}")
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError("truncated", str(e)) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError("too_many_pixels", str(e)) from None
    return img, fmt


def decode_image(data: bytes, *, size: int, max_pixels: int, max_bytes: int) -> Image.Image:
    """Decode, validate (:func:`check_image`) and resize one image to an RGB ``size x size`` image."""
    img, _ = check_image(data, max_pixels=max_pixels, max_bytes=max_bytes)
    img = _to_rgb(img)
    return img.resize((size, size), Image.Resampling.BICUBIC)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def load_image(
    uri: str | None,
    data: bytes | None,
    *,
    root: str | None,
    size: int,
    max_pixels: int,
    max_bytes: int,
    allowed_schemes: tuple[str, ...] | list[str],
    http=None,
) -> Image.Image:
    """One image from inline bytes or a URI (resolved against ``root``), validated and resized; ``http``: the
    :class:`attrpipe.http_images.HttpSettings` an ``http(s)://`` URI is fetched with."""
    if data is None:
        data = read_bytes(resolve_uri(uri or "", root, allowed_schemes), max_bytes, http)
    return decode_image(data, size=size, max_pixels=max_pixels, max_bytes=max_bytes)
