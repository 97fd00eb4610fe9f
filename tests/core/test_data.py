"""Decoding odd but valid images the same way everywhere (visrec.core.data.to_rgb)."""

import numpy as np
import pytest
from PIL import Image

from visrec.core.data import load_rgb, to_rgb
from visrec.core.ingest import EXIF_ORIENTATION, read_image_size


def test_sixteen_bit_grayscale_keeps_its_intensities(tmp_path):
    pixels = np.full((4, 6), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    pixels[0, 0] = 65535
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path)
    rgb = np.asarray(load_rgb(path))
    assert rgb.shape == (4, 6, 3)
    assert rgb[1, 1].tolist() == [128, 128, 128]  # 32768 / 257 = 127.5 -> 128
    assert rgb[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("values", "expected"), [(0.5, 128), (200.0, 200)])
def test_float_images_in_unit_or_byte_range(values, expected):
    image = Image.fromarray(np.full((2, 2), values, dtype=np.float32), mode="F")
    assert np.asarray(to_rgb(image))[0, 0].tolist() == [expected] * 3


def test_exif_orientation_is_applied_in_size_and_pixels(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif)
    assert read_image_size(path) == (20, 40)
    assert load_rgb(path).size == (20, 40)


def test_rgba_palette_and_cmyk_become_rgb():
    for mode in ("RGBA", "P", "CMYK", "LA", "L"):
        assert to_rgb(Image.new(mode, (3, 3))).mode == "RGB"
