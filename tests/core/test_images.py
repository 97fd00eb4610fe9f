"""Tests of visrec.core.images: decoding every mode one way, and checking files at ingestion."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visrec.core import images as images_module
from visrec.core.images import (
    InspectSettings,
    Rejected,
    fit_square,
    inspect_file,
    inspect_files,
    load_image,
    to_model_mode,
)

EXIF_ORIENTATION = 0x0112
RESOLUTION = 8
SETTINGS = InspectSettings(max_pixels=100_000_000, resolution=RESOLUTION, channels=3)
GREEN = (10, 200, 30)


def _encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _noise_png(size: tuple[int, int] = (32, 32)) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return _encoded(Image.fromarray(noise), "PNG")


def _noise_jpeg() -> bytes:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return _encoded(Image.fromarray(noise), "JPEG")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bilevel_png(side: int) -> bytes:
    """A valid all-black 1-bit PNG of ``side x side`` pixels, compressed row by row.

    20000 x 20000 is 400 million pixels in about 50 kB, written in a fraction of a second.
    """
    row = bytes(1 + (side + 7) // 8)  # filter byte, then one bit per pixel
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))


def _inspect(tmp_path: Path, name: str, data: bytes,
             settings: InspectSettings = SETTINGS, previous_hash: str = ""):
    (tmp_path / name).write_bytes(data)
    return inspect_files(str(tmp_path), [(name, previous_hash)], settings)[0]


def _pixels(found, channels: int = 3) -> np.ndarray:
    return np.frombuffer(found.pixels, np.uint8).reshape(RESOLUTION, RESOLUTION, channels)


# --- to_model_mode and load_image ------------------------------------------------------


def test_sixteen_bit_grayscale_keeps_its_intensities(tmp_path):
    pixels = np.full((4, 6), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    pixels[0, 0] = 65535
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path)
    rgb = np.asarray(load_image(path))
    assert rgb.shape == (4, 6, 3)
    assert rgb[1, 1].tolist() == [128, 128, 128]  # 32768 / 257 = 127.5 -> 128
    assert rgb[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("values", "expected"), [(0.5, 128), (200.0, 200), (0.0, 0),
                                                    (-3.0, 0), (400.0, 255)])
def test_float_images_in_unit_or_byte_range(values, expected):
    image = Image.fromarray(np.full((2, 2), values, dtype=np.float32), mode="F")
    assert np.asarray(to_model_mode(image))[0, 0].tolist() == [expected] * 3


def test_exif_orientation_is_applied_in_size_and_pixels(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue band on the left of the stored image
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    shown = load_image(path)
    assert shown.size == (20, 40)
    pixels = np.asarray(shown, dtype=np.int16)
    # Rotated clockwise, the stored left edge is the displayed top.
    assert np.abs(pixels[2, 10] - (0, 0, 255)).max() <= 8
    assert np.abs(pixels[37, 10] - (255, 0, 0)).max() <= 8


@pytest.mark.parametrize("mode", ["RGBA", "P", "CMYK", "LA", "L", "1", "I;16", "I", "F",
                                  "PA", "RGB"])
@pytest.mark.parametrize(("channels", "expected"), [(3, "RGB"), (1, "L")])
def test_every_mode_becomes_rgb_or_gray(mode, channels, expected):
    converted = to_model_mode(Image.new(mode, (3, 2)), channels)
    assert converted.mode == expected
    assert converted.size == (3, 2)


@pytest.mark.parametrize(("image", "channels", "expected"), [
    # Fully transparent: the page shows white whatever the colour underneath.
    (Image.new("RGBA", (2, 2), (10, 20, 30, 0)), 3, [255, 255, 255]),
    (Image.new("RGBA", (2, 2), (10, 20, 30, 255)), 3, [10, 20, 30]),
    # Half transparent black over white: about half grey.
    (Image.new("RGBA", (2, 2), (0, 0, 0, 128)), 3, [127, 127, 127]),
    (Image.new("LA", (2, 2), (0, 0)), 1, [255]),
    (Image.new("LA", (2, 2), (40, 255)), 1, [40]),
    (Image.new("LA", (2, 2), (0, 0)), 3, [255, 255, 255]),
])
def test_transparency_is_composited_on_white(image, channels, expected):
    pixels = np.asarray(to_model_mode(image, channels)).reshape(2, 2, -1)
    assert pixels[0, 0].tolist() == expected


def test_palette_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0] + list(GREEN) + [0, 0, 0] * 254)
    image.putpixel((0, 0), 0)
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)  # palette entry 0 (black) is transparent
    pixels = np.asarray(load_image(path))
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[1, 1].tolist() == list(GREEN)


@pytest.mark.parametrize(("colour", "gray"), [((255, 0, 0), 76), ((0, 255, 0), 150),
                                              ((255, 255, 255), 255)])
def test_one_channel_is_luminance(tmp_path, colour, gray):
    path = tmp_path / "colour.png"
    Image.new("RGB", (3, 3), colour).save(path)
    image = load_image(path, channels=1)
    assert image.mode == "L"
    assert np.asarray(image)[1, 1] == gray  # ITU-R 601: 0.299 R + 0.587 G + 0.114 B


# --- fit_square --------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "resolution"), [((30, 10), 10), ((10, 30), 10), ((30, 10), 5)])
def test_fit_square_keeps_the_centre(size, resolution):
    """Thirds of the long side are red, green, blue: only green is left after the crop."""
    image = Image.new("RGB", size, (255, 0, 0))
    third = max(size) // 3
    box = (third, 0, 2 * third, size[1]) if size[0] > size[1] else (0, third, size[0], 2 * third)
    image.paste((0, 255, 0), box)
    end = (2 * third, 0, size[0], size[1]) if size[0] > size[1] else (0, 2 * third, *size)
    image.paste((0, 0, 255), end)
    square = fit_square(image, resolution)
    assert square.shape == (resolution, resolution, 3)
    assert square.dtype == np.uint8
    assert square.flags["C_CONTIGUOUS"]
    centre = square[1:-1, 1:-1].reshape(-1, 3)  # bicubic may blend the outermost pixels
    assert np.abs(centre.astype(int) - (0, 255, 0)).max() <= 2


def test_fit_square_of_a_gray_image_has_one_channel():
    square = fit_square(Image.new("L", (12, 7), 99), 4)
    assert square.shape == (4, 4, 1)
    assert (square == 99).all()


# --- inspect_file: rejected files ------------------------------------------------------


def _flip_idat_byte(data: bytes) -> bytes:
    start = data.index(b"IDAT") + 8  # a bit-rotted byte inside the compressed pixels
    return data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:]


@pytest.mark.parametrize(("name", "make", "reason"), [
    ("empty.png", lambda: b"", "empty_file"),
    ("garbage.png", lambda: b"this is not a png file", "not_an_image"),
    ("text.jpg", lambda: b"plain text named like a jpeg " * 10, "not_an_image"),
    ("half.png", lambda: _noise_png()[: len(_noise_png()) // 2], "truncated"),
    ("half.jpg", lambda: _noise_jpeg()[: len(_noise_jpeg()) // 2], "truncated"),
    ("signature only.png", lambda: _noise_png()[:8], "truncated"),
    ("header cut.png", lambda: _noise_png()[:20], "truncated"),
    ("header cut.jpg", lambda: _noise_jpeg()[:10], "truncated"),
    ("bit rot.png", lambda: _flip_idat_byte(_noise_png()), "unreadable"),
])
def test_bad_files_are_rejected_with_their_reason(tmp_path, name, make, reason):
    data = make()
    found = _inspect(tmp_path, name, data)
    assert (found.reason, found.pixels) == (reason, None)
    assert found.detail
    assert found.path == name
    expected_hash = hashlib.blake2b(data, digest_size=16).hexdigest() if data else ""
    assert found.hash == expected_hash  # bad files are hashed too (but never decoded)


def test_a_folder_in_place_of_a_file_is_not_a_regular_file(tmp_path):
    (tmp_path / "folder.png").mkdir()
    found = inspect_files(str(tmp_path), [("folder.png", "")], SETTINGS)[0]
    assert (found.reason, found.detail) == ("not_a_regular_file",
                                            "a folder: only regular files are read")


@pytest.mark.parametrize("max_pixels", [100_000_000, 300_000_000])
def test_decompression_bomb_is_rejected_without_decoding(tmp_path, monkeypatch, max_pixels):
    """Above twice the limit Pillow refuses the header; between, visrec's own check does."""
    monkeypatch.setattr(images_module, "to_model_mode", _must_not_decode)
    settings = InspectSettings(max_pixels, RESOLUTION, 3)
    found = _inspect(tmp_path, "bomb.png", _bilevel_png(20_000), settings)
    assert (found.reason, found.pixels) == ("too_many_pixels", None)
    expected = ("(400000000 pixels) exceeds limit of 200000000" if max_pixels == 100_000_000
                else "20000x20000 is more than ingestion.max_pixels = 300000000")
    assert expected in found.detail


def _must_not_decode(*_args: object, **_kwargs: object) -> Image.Image:
    raise AssertionError("the file was decoded")


@pytest.mark.parametrize(("max_pixels", "reason"), [(191, "too_many_pixels"), (192, "")])
def test_max_pixels_limit_is_width_times_height(tmp_path, max_pixels, reason):
    data = _encoded(Image.new("RGB", (16, 12), GREEN), "PNG")  # 192 pixels
    found = _inspect(tmp_path, "small.png", data, InspectSettings(max_pixels, RESOLUTION, 3))
    assert found.reason == reason
    assert (found.pixels is None) == bool(reason)
    if reason:
        assert found.detail == f"16x12 is more than ingestion.max_pixels = {max_pixels}"


def test_pixel_limit_of_pillow_is_restored(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    _inspect(tmp_path, "bomb.png", _bilevel_png(20_000), InspectSettings(1000, 0, 3))
    assert before == Image.MAX_IMAGE_PIXELS


def test_rejected_keeps_reason_and_a_short_detail():
    error = Rejected("truncated", "x" * 1000)
    assert (error.reason, len(error.detail)) == ("truncated", 300)
    assert str(error).startswith("truncated: xxx")


# --- inspect_file: valid images in odd modes ------------------------------------------


def _palette(mode: str) -> Image.Image:
    image = Image.new(mode, (12, 10), 3 if mode == "P" else (3, 255))
    image.putpalette([0, 0, 0] * 3 + list(GREEN) + [0, 0, 0] * 252)
    return image


def _odd_files() -> list[tuple[str, bytes, str, str, tuple[int, int], list[int], int]]:
    """(name, bytes, format, mode, shown width x height, expected RGB, tolerance)."""
    sixteen = np.full((10, 12), 200 * 257, np.uint16)
    rotated = Image.new("RGB", (12, 10), GREEN)
    exif = rotated.getexif()
    exif[EXIF_ORIENTATION] = 6
    return [
        ("gray.png", _encoded(Image.new("L", (12, 10), 100), "PNG"), "PNG", "L",
         (12, 10), [100] * 3, 0),
        ("gray alpha.png", _encoded(Image.new("LA", (12, 10), (100, 255)), "PNG"), "PNG", "LA",
         (12, 10), [100] * 3, 0),
        ("transparent gray.png", _encoded(Image.new("LA", (12, 10), (0, 0)), "PNG"), "PNG",
         "LA", (12, 10), [255] * 3, 0),
        ("palette.png", _encoded(_palette("P"), "PNG"), "PNG", "P", (12, 10), list(GREEN), 0),
        ("palette alpha.tif", _encoded(_palette("PA"), "TIFF"), "TIFF", "PA", (12, 10),
         list(GREEN), 0),
        ("rgba.png", _encoded(Image.new("RGBA", (12, 10), (*GREEN, 255)), "PNG"), "PNG", "RGBA",
         (12, 10), list(GREEN), 0),
        ("transparent.png", _encoded(Image.new("RGBA", (12, 10), (*GREEN, 0)), "PNG"), "PNG",
         "RGBA", (12, 10), [255] * 3, 0),
        ("cmyk.jpg", _encoded(Image.new("CMYK", (12, 10), (0, 255, 255, 0)), "JPEG",
                              quality=95), "JPEG", "CMYK", (12, 10), [255, 0, 0], 4),
        ("sixteen.png", _encoded(Image.fromarray(sixteen), "PNG"), "PNG", "I;16", (12, 10),
         [200] * 3, 0),
        ("float.tif", _encoded(Image.fromarray(np.full((10, 12), 0.5, np.float32), mode="F"),
                               "TIFF"), "TIFF", "F", (12, 10), [128] * 3, 0),
        ("rotated.jpg", _encoded(rotated, "JPEG", exif=exif, quality=95), "JPEG", "RGB",
         (10, 12), list(GREEN), 4),
        ("bilevel.png", _encoded(Image.new("1", (12, 10), 1), "PNG"), "PNG", "1", (12, 10),
         [255] * 3, 0),
        ("upper.JPEG", _encoded(Image.new("RGB", (12, 10), GREEN), "JPEG", quality=95), "JPEG",
         "RGB", (12, 10), list(GREEN), 4),
        ("web.webp", _encoded(Image.new("RGB", (12, 10), GREEN), "WEBP", lossless=True),
         "WEBP", "RGB", (12, 10), list(GREEN), 0),
    ]


@pytest.mark.parametrize(("name", "data", "fmt", "mode", "size", "rgb", "tolerance"),
                         _odd_files(), ids=[f[0] for f in _odd_files()])
@pytest.mark.parametrize("channels", [3, 1])
def test_odd_but_valid_images_are_packed(tmp_path, name, data, fmt, mode, size, rgb,
                                         tolerance, channels):
    settings = InspectSettings(SETTINGS.max_pixels, RESOLUTION, channels)
    found = _inspect(tmp_path, name, data, settings)
    assert (found.reason, found.detail) == ("", "")
    assert (found.format, found.mode) == (fmt, mode)
    assert (found.width, found.height) == size  # as displayed: EXIF rotation applied
    assert found.hash == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert len(found.pixels) == RESOLUTION * RESOLUTION * channels
    pixels = _pixels(found, channels)
    expected = (np.asarray(Image.new("RGB", (1, 1), tuple(rgb)).convert("L"))[0, 0]
                if channels == 1 else np.asarray(rgb))
    assert np.abs(pixels.astype(int) - expected).max() <= tolerance


def test_check_only_settings_pack_nothing(tmp_path):
    found = _inspect(tmp_path, "a.png", _noise_png(), InspectSettings(10**8, 0, 3))
    assert (found.reason, found.pixels) == ("", None)
    assert (found.width, found.height) == (32, 32)


def test_pixels_are_the_fit_square_of_the_image(tmp_path):
    data = _noise_png((20, 14))
    found = _inspect(tmp_path, "noise.png", data)
    expected = fit_square(load_image(tmp_path / "noise.png"), RESOLUTION)
    np.testing.assert_array_equal(_pixels(found), expected)


# --- inspect_file: the hash and the previous hash -------------------------------------


def test_unchanged_hash_skips_decoding(tmp_path, monkeypatch):
    data = _noise_png()
    first = _inspect(tmp_path, "a.png", data)
    monkeypatch.setattr(images_module, "to_model_mode", _must_not_decode)
    again = inspect_file(tmp_path, "a.png", first.hash, SETTINGS)
    assert again == ("a.png", first.hash, "same", "", 0, 0, "", "", None)


def test_previous_hash_of_a_bad_file_is_not_opened_again(tmp_path):
    """A file whose bytes still hash as before is not even parsed: the cache keeps its row."""
    data = b"garbage that is not an image"
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    found = _inspect(tmp_path, "bad.png", data, previous_hash=digest)
    assert (found.format, found.reason) == ("same", "")


@pytest.mark.parametrize("previous", ["", "0" * 32])
def test_other_previous_hash_decodes_again(tmp_path, previous):
    found = _inspect(tmp_path, "a.png", _noise_png(), previous_hash=previous)
    assert found.format == "PNG"
    assert found.pixels is not None


def test_hash_is_stable_and_content_addressed(tmp_path):
    data = _noise_png()
    (tmp_path / "one.png").write_bytes(data)
    (tmp_path / "two.png").write_bytes(data)
    (tmp_path / "other.png").write_bytes(_noise_png((31, 32)))
    found = inspect_files(str(tmp_path), [("one.png", ""), ("two.png", ""), ("other.png", ""),
                                          ("one.png", "")], SETTINGS)
    hashes = [f.hash for f in found]
    assert hashes[0] == hashes[1] == hashes[3] != hashes[2]
    assert hashes[0] == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert len(hashes[0]) == 32
    assert [f.path for f in found] == ["one.png", "two.png", "other.png", "one.png"]
