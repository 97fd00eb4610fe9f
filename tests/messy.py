"""A messy image folder on disk: every kind of bad and odd-but-valid file ingestion meets.

:func:`make_messy_folder` writes it and returns what ingestion must make of it: the reason
of each bad file, and the paths of the valid ones, odd ones included.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {"cat": (220, 40, 40), "dog": (40, 200, 60), "oiseau bleu é": (40, 60, 220)}
EXIF_ORIENTATION = 0x0112


@dataclass
class Messy:
    """What ingestion must find in the messy folder."""

    root: Path
    bad: dict[str, str] = field(default_factory=dict)  # path -> quarantine reason
    valid: set[str] = field(default_factory=set)  # paths that must reach the manifest
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # displayed width, height
    dropped_classes: set[str] = field(default_factory=set)


def _pixels(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (24, 20)
            ) -> np.ndarray:
    """A class-coloured image with its own noise, so that no two files hash alike."""
    rng = np.random.default_rng(seed)
    base = np.asarray(colour, np.int16)[None, None, :]
    noise = rng.integers(-30, 30, (size[1], size[0], 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _odd_but_valid(colour: tuple[int, int, int], seed: int) -> dict[str, bytes]:
    """One file per odd mode or format, each of which must decode to RGB."""
    rgb = Image.fromarray(_pixels(colour, seed))
    alpha = Image.fromarray(np.full((20, 24), 128, np.uint8))
    sixteen = (np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16)
    floats = np.asarray(rgb.convert("L"), np.float32) / 255.0
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    rotated = rgb.resize((30, 20))  # stored 30 wide; EXIF 6 shows it 20 wide, 30 high
    exif = rotated.getexif()
    exif[EXIF_ORIENTATION] = 6
    return {
        "gray L.png": _encoded(rgb.convert("L"), "PNG"),
        "gray alpha LA.png": _encoded(Image.merge("LA", (rgb.convert("L"), alpha)), "PNG"),
        "palette P.gif": _encoded(palette, "GIF"),
        "palette alpha PA.png": _encoded(palette, "PNG", transparency=0),
        "rgba.png": _encoded(Image.merge("RGBA", (*rgb.split(), alpha)), "PNG"),
        "cmyk.jpg": _encoded(rgb.convert("CMYK"), "JPEG", quality=95),
        "sixteen bit.png": _encoded(Image.fromarray(sixteen), "PNG"),
        "float.tif": _encoded(Image.fromarray(floats, mode="F"), "TIFF"),
        "rotated exif.jpg": _encoded(rotated, "JPEG", exif=exif),
        "bitmap.bmp": _encoded(rgb, "BMP"),
        "web.webp": _encoded(rgb, "WEBP", lossless=True),
        "UPPER CASE.JPEG": _encoded(rgb, "JPEG", quality=95),
        "résumé ñ.png": _encoded(rgb, "PNG"),
    }


def _huge_png() -> bytes:
    """A 20000 x 20000 PNG (400 million pixels) in a few kB: a decompression bomb."""
    return _encoded(Image.new("1", (20000, 20000)), "PNG")


def make_messy_folder(root: Path, per_class: int = 12) -> Messy:
    """Write a train/val/test folder full of trouble under ``root``.

    Args:
        root: An empty folder.
        per_class: Plain valid PNGs per class in train (val and test get a third each).
    """
    messy = Messy(root)
    seed = 0
    for split, count in (("train", per_class), ("val", per_class // 3),
                         ("test", per_class // 3)):
        for label, colour in CLASSES.items():
            for i in range(count):
                seed += 1
                path = f"{split}/{label}/{i:03d}.png"
                _write(root / path, _encoded(Image.fromarray(_pixels(colour, seed)), "PNG"))
                messy.valid.add(path)
    for name, data in _odd_but_valid(CLASSES["dog"], seed=10_000).items():
        _write(root / "train" / "dog" / "odd" / name, data)
        messy.valid.add(f"train/dog/odd/{name}")
    messy.sizes["train/dog/odd/rotated exif.jpg"] = (20, 30)

    cat = root / "train" / "cat"
    good_png = _encoded(Image.fromarray(_pixels(CLASSES["cat"], 99_999)), "PNG")
    good_jpg = _encoded(Image.fromarray(_pixels(CLASSES["cat"], 99_998, (64, 64))), "JPEG")
    idat = good_png.index(b"IDAT") + 8
    bad = {
        "train/cat/empty.png": (b"", "empty_file"),
        "train/cat/notes.txt": (b"just text", "not_an_image"),
        "train/cat/text named.jpg": (b"this is not a jpeg at all", "not_an_image"),
        "train/cat/half.png": (good_png[: len(good_png) // 2], "truncated"),
        "train/cat/half.jpg": (good_jpg[: len(good_jpg) // 2], "truncated"),
        "train/cat/header cut.png": (good_png[:12], "truncated"),
        "train/cat/bit rot.png": (good_png[:idat] + bytes([good_png[idat] ^ 0xFF])
                                  + good_png[idat + 1:], "unreadable"),
        "train/cat/huge.png": (_huge_png(), "too_many_pixels"),
        "train/stray file.png": (good_png, "not_in_a_class_folder"),
    }
    for path, (data, reason) in bad.items():
        _write(root / path, data)
        messy.bad[path] = reason
    os.symlink(root / "nowhere.png", cat / "dangling link.png")
    messy.bad["train/cat/dangling link.png"] = "unreadable"
    os.symlink(root / "train", cat / "loop")  # a folder link back to an ancestor
    _write(cat / ".hidden.png", good_png)  # hidden: ignored, neither listed nor quarantined
    _write(root / "train" / ".cache" / "x.png", good_png)

    # The same content twice in one class, under two labels, and in two splits.
    copy = _encoded(Image.fromarray(_pixels(CLASSES["cat"], 77_777)), "PNG")
    for path in ("train/cat/original.png", "train/cat/second copy.png"):
        _write(root / path, copy)
    messy.valid.add("train/cat/original.png")
    messy.bad["train/cat/second copy.png"] = "duplicate"
    _write(root / "test/cat/leaked.png", copy)
    messy.bad["test/cat/leaked.png"] = "leakage"
    _write(root / "val/cat/leaked too.png", copy)
    messy.bad["val/cat/leaked too.png"] = "leakage"
    conflict = _encoded(Image.fromarray(_pixels(CLASSES["dog"], 66_666)), "PNG")
    for path in ("train/cat/which one.png", "train/dog/which one.png"):
        _write(root / path, conflict)
        messy.bad[path] = "label_conflict"

    (root / "train" / "empty class").mkdir()
    _write(root / "train/only bad/broken.jpg", good_jpg[:40])
    messy.bad["train/only bad/broken.jpg"] = "truncated"
    _write(root / "test/ghost/000.png", _encoded(Image.fromarray(_pixels((0, 0, 0), 5)), "PNG"))
    messy.bad["test/ghost/000.png"] = "class_not_in_train"
    messy.dropped_classes = {"empty class", "only bad", "ghost"}
    return messy
