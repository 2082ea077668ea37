import io
import struct
import zlib

import pytest
from PIL import Image

from attrpipe.images import ImageError, decode_image, load_image, resolve_uri

LIMITS = dict(size=224, max_pixels=40_000_000, max_bytes=2_000_000)
SCHEMES = ("file", "s3")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header is rewritten to claim width x height pixels (correct CRC)."""
    data = bytearray(encode(Image.new("RGB", (4, 4), "red"), "PNG"))
    ihdr = bytearray(data[12:29])  # type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(Image.new("RGBA", (50, 30), (255, 0, 0, 0)), "PNG"),
        lambda: encode(Image.new("CMYK", (40, 40), (0, 255, 0, 0)), "JPEG"),
        lambda: encode(Image.new("I;16", (40, 40), 40000), "PNG"),
        lambda: encode(Image.new("P", (40, 40), 3), "PNG"),
        lambda: encode(Image.new("L", (1, 1), 128), "PNG"),
        lambda: encode(Image.new("RGB", (300, 100), "blue"), "WEBP"),
    ],
)
def test_odd_but_valid_images_become_rgb_224(make):
    img = decode_image(make(), **LIMITS)
    assert img.mode == "RGB" and img.size == (224, 224)


def test_alpha_is_composited_on_white():
    img = decode_image(encode(Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "PNG"), **LIMITS)
    assert img.getpixel((100, 100)) == (255, 255, 255)


def test_exif_rotation_is_applied():
    base = Image.new("RGB", (60, 20), "green")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    data = encode(base, "JPEG", exif=exif.tobytes())
    img = decode_image(data, size=224, max_pixels=10**8, max_bytes=10**7)
    assert img.size == (224, 224)
    # Check orientation via a non-square resize target: decode, then compare aspect before resizing.
    from PIL import ImageOps

    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == (20, 60)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "not_an_image"),
        (b"this is not an image at all" * 10, "not_an_image"),
        (encode(Image.new("RGB", (200, 200), "red"), "JPEG")[:300], "truncated"),
        (png_claiming(200_000, 200_000), "too_many_pixels"),
        (b"x" * 3_000_000, "too_many_bytes"),
    ],
)
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageError) as e:
        decode_image(data, **LIMITS)
    assert e.value.reason == reason


def test_pixel_limit_is_configurable():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageError, match="too_many_pixels"):
        decode_image(data, size=28, max_pixels=9_999, max_bytes=10**6)


@pytest.mark.parametrize(
    "uri",
    ["", "../secret.jpg", "images/../../etc/passwd", "ftp://host/a.jpg", "http://example.com/a.jpg", "s3://b/../x.jpg"],
)
def test_bad_uris(uri):
    with pytest.raises(ImageError) as e:
        resolve_uri(uri, "/catalog", SCHEMES)
    assert e.value.reason == "bad_uri"


def test_uri_resolution():
    assert resolve_uri("images/a.jpg", "/cat", SCHEMES) == "/cat/images/a.jpg"
    assert resolve_uri("/abs/a.jpg", "/cat", SCHEMES) == "/abs/a.jpg"
    assert resolve_uri("s3://bucket/a.jpg", "/cat", SCHEMES) == "s3://bucket/a.jpg"
    with pytest.raises(ImageError, match="local files are not allowed"):
        resolve_uri("a.jpg", "/cat", ("s3",))


def test_load_image_from_file_and_missing(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48), "red").save(tmp_path / "images" / "a.png")
    kw = dict(root=str(tmp_path), allowed_schemes=SCHEMES, **LIMITS)
    assert load_image("images/a.png", None, **kw).size == (224, 224)
    with pytest.raises(ImageError) as e:
        load_image("images/missing.png", None, **kw)
    assert e.value.reason == "missing"
    inline = encode(Image.new("RGB", (10, 10)), "PNG")
    assert load_image(None, inline, **kw).size == (224, 224)
