"""Decoding image files the one way visrec sees them, and checking files at ingestion.

Every reader of images (ingestion's validation and packed cache, the file-reading
datasets, the augmentation preview, prediction) converts through :func:`to_model_mode`, so
a CMYK JPEG, a 16-bit PNG or a palette GIF looks the same to the model wherever it is read.

This module imports only NumPy and Pillow: ingestion's worker processes import it, and
each worker should start in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visrec.core.files import Rejected, read_regular_file

SIXTEEN_BIT_TO_EIGHT = 257.0  # 65535 / 255
INTEGER_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
BACKGROUND = 255  # transparent pixels are shown on white, as a browser shows them on a page
HASH_BYTES = 16  # blake2b digest: 128 bits, no accidental collision among billions of files
# First bytes of the formats ingestion accepts: a file that starts like an image but cannot
# be identified was cut off inside its header.
SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")
# The raster formats visrec decodes: Pillow is never asked to identify a file as anything
# else, so PostScript, EPS or PDF bytes behind an image name never reach Ghostscript.
FORMATS = ("BMP", "GIF", "JPEG", "PNG", "TIFF", "WEBP")


def to_model_mode(image: Image.Image, channels: int = 3) -> Image.Image:
    """8-bit RGB (or L for ``channels=1``) as a person sees the image.

    EXIF orientation is applied; 16-bit and float intensities are mapped onto 0..255;
    transparency is composited on white; palette, CMYK and every other mode converted.

    Args:
        image: A decoded PIL image of any mode.
        channels: 3 for RGB, 1 for grayscale.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in INTEGER_MODES:
        pixels = np.asarray(image, dtype=np.float64) / SIXTEEN_BIT_TO_EIGHT
        image = Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8))
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        pixels = pixels * 255.0 if pixels.max(initial=0.0) <= 1.0 else pixels  # [0, 1] floats
        image = Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (BACKGROUND,) * 3 + (255,))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L" if channels == 1 else "RGB")


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Decode an image file as :func:`to_model_mode` sees it: a regular file in one of
    :data:`FORMATS` (a file ingestion checked; raises :class:`Rejected` otherwise)."""
    data = read_regular_file(path, None, "ingestion.max_bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd EXIF and palettes
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            return to_model_mode(image, channels)


def fit_square(image: Image.Image, resolution: int) -> np.ndarray:
    """Shorter side to ``resolution``, centre crop: a ``resolution x resolution`` uint8 array.

    Returns:
        ``HxWxC`` (C = 3 for RGB, 1 for L), C-contiguous.
    """
    square = ImageOps.fit(image, (resolution, resolution), method=Image.Resampling.BICUBIC)
    pixels = np.asarray(square, dtype=np.uint8)
    return np.ascontiguousarray(pixels.reshape(resolution, resolution, -1))


class Inspection(NamedTuple):
    """What ingestion learns from opening one file once.

    ``reason`` is empty for a valid image, else one of ingestion's quarantine reasons;
    ``pixels`` holds the packed-cache bytes (``resolution x resolution x channels``) or None.
    """

    path: str
    hash: str
    format: str
    mode: str
    width: int
    height: int
    reason: str
    detail: str
    pixels: bytes | None


class InspectSettings(NamedTuple):
    """How files are checked and cached; the same in every worker process.

    ``resolution`` 0 means: check only, cache nothing. ``max_bytes``: larger files are
    refused before they are read (None: no cap).
    """

    max_pixels: int
    resolution: int
    channels: int
    max_bytes: int | None = None


@contextlib.contextmanager
def _pixel_limit(max_pixels: int) -> Iterator[None]:
    """Let Pillow open headers up to our own limit; :func:`inspect_file` enforces it."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decompression-bomb, EXIF and palette warnings
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _failure(error: Exception) -> Rejected:
    reason = "truncated" if "truncated" in str(error).lower() else "unreadable"
    return Rejected(reason, f"{type(error).__name__}: {error}")


def other_format(data: bytes) -> str | None:
    """The format Pillow would take ``data`` for among those visrec does not decode (EPS,
    PDF, ...), from the first bytes alone; None when none claims it."""
    Image.init()
    prefix = data[:16]
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        if name in FORMATS or accept is None:
            continue
        with contextlib.suppress(SyntaxError, IndexError, TypeError, struct.error):
            if accept(prefix):  # a check of the first bytes only: nothing is decoded
                return name
    return None


def _open(data: bytes, max_pixels: int, key: str = "ingestion.max_pixels") -> Image.Image:
    """Read the header of an image held in ``data``, refusing more than ``max_pixels``
    (the parameter ``key`` sets, named in the reason) and every format but
    :data:`FORMATS`."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        if (name := other_format(data)) is not None:
            raise Rejected("unsupported_format",
                           f"{name}: visrec reads {', '.join(FORMATS)} images") from None
        if data.startswith(SIGNATURES):
            raise Rejected("truncated", "image header cut off") from None
        raise Rejected("not_an_image", "not a format Pillow can read") from None
    except Image.DecompressionBombError as error:
        raise Rejected("too_many_pixels", f"{error} ({key} = {max_pixels})"
                       ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise _failure(error) from None
    width, height = image.size
    if width * height > max_pixels:
        raise Rejected("too_many_pixels", f"{width}x{height} is more than "
                                          f"{key} = {max_pixels}")
    return image


def _decode(image: Image.Image, channels: int) -> Image.Image:
    """Decode the pixels of an opened image into the model's mode, or raise Rejected."""
    try:
        image.load()
        return to_model_mode(image, channels)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise _failure(error) from None


def read_checked(path: Path, channels: int, max_pixels: int, max_bytes: int | None = None,
                 key: str = "predict") -> Image.Image:
    """Decode an image file as ingestion checks it, for readers that meet unchecked files.

    Args:
        path: The file.
        channels: 3 for RGB, 1 for grayscale.
        max_pixels: Larger images are refused.
        max_bytes: Larger files are refused before they are read; None: no cap.
        key: The parameter block that sets both (``predict``, ``retrieve``), named in the
            reason.

    Returns:
        The image in the model's mode (:func:`to_model_mode`).

    Raises:
        Rejected: With one of ingestion's quarantine reasons (``not_an_image``,
            ``truncated``, ``empty_file``, ``too_many_pixels``, ``unreadable``,
            ``not_a_regular_file``, ``too_large``, ``unsupported_format``).
    """
    return decode_checked(read_regular_file(path, max_bytes, f"{key}.max_bytes"), channels,
                          max_pixels, key)


def decode_checked(data: bytes, channels: int, max_pixels: int, key: str = "predict"
                   ) -> Image.Image:
    """Decode the bytes of an image file (an upload, say) as :func:`read_checked` does.

    Raises:
        Rejected: ``empty_file``, ``not_an_image``, ``truncated``, ``too_many_pixels``,
            ``unsupported_format`` or ``unreadable``.
    """
    if not data:
        raise Rejected("empty_file", "0 bytes")
    with _pixel_limit(max_pixels):
        return _decode(_open(data, max_pixels, f"{key}.max_pixels"), channels)


def inspect_file(root: Path, relative: str, previous_hash: str,
                 settings: InspectSettings) -> Inspection:
    """:func:`_inspect` one file under the pixel limit of ``settings``."""
    with _pixel_limit(settings.max_pixels):
        return _inspect(root, relative, previous_hash, settings)


def _inspect(root: Path, relative: str, previous_hash: str,
             settings: InspectSettings) -> Inspection:
    """Open ``root / relative`` once: hash it, decode it fully, and pack it for the cache.

    Args:
        root: Folder the path is relative to.
        relative: The file's path under ``root``.
        previous_hash: Its content hash from the last ingestion, or ``""``. When the bytes
            still hash to it, the file is not decoded again and ``format`` is ``"same"``.
        settings: Pixel limit and cache resolution and channels.

    Returns:
        The inspection; never raises for a bad file.
    """
    digest, image_format, mode, size = "", "", "", (0, 0)
    try:
        data = read_regular_file(root / relative, settings.max_bytes, "ingestion.max_bytes")
        digest = hashlib.blake2b(data, digest_size=HASH_BYTES).hexdigest()
        if digest == previous_hash:
            return Inspection(relative, digest, "same", "", 0, 0, "", "", None)
        image = _open(data, settings.max_pixels)
        image_format, mode, size = image.format or "", image.mode, image.size
        shown = _decode(image, settings.channels)
    except Rejected as rejected:
        return Inspection(relative, digest, image_format, mode, size[0], size[1],
                          rejected.reason, rejected.detail, None)
    pixels = fit_square(shown, settings.resolution).tobytes() if settings.resolution else None
    return Inspection(relative, digest, image_format, mode, shown.width, shown.height, "", "",
                      pixels)


def inspect_files(root: str, items: Sequence[tuple[str, str]],
                  settings: InspectSettings) -> list[Inspection]:
    """Inspect a chunk of files: the unit of work of ingestion's process pool.

    Args:
        root: Folder the paths are relative to.
        items: ``(relative path, previous hash or "")`` pairs.
        settings: See :func:`inspect_file`.
    """
    folder = Path(root)
    with _pixel_limit(settings.max_pixels):
        return [_inspect(folder, relative, previous, settings) for relative, previous in items]


def worker_count(requested: int | None) -> int:
    """Processes for validation: every core unless ``ingestion.num_workers`` says otherwise."""
    return requested if requested is not None else (os.cpu_count() or 1)
