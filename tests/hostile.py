"""A hostile image folder on disk: what real folders hold that no image reader should trust.

:func:`make_hostile_folder` writes two classes of valid PNGs and, beside them, a named pipe,
``/dev/zero`` behind an image name, a 2 GB sparse file, PostScript named ``.jpg``, a name
that is not UTF-8, a symbolic link to itself at the top and an image 300 folders deep. It
returns what ingestion and predict must make of each. :func:`ghostscript_stand_in` puts a
``gs`` first on ``PATH`` that records any call.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import write_png

CLASSES = ("blue", "red")
PER_CLASS = 12
DEPTH = 300
NOT_UTF8 = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: Python keeps the byte escaped
SHOWN_NOT_UTF8 = "blue/caf\\xe9.png"  # how tables show it
SPARSE_BYTES = 2 * 2**30
POSTSCRIPT = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
              b"newpath 0 0 moveto 10 10 lineto stroke showpage\n%%EOF\n")


@dataclass
class Hostile:
    """What visrec must find in the hostile folder."""

    root: Path
    bad: dict[str, str] = field(default_factory=dict)  # shown path -> reason
    valid: set[str] = field(default_factory=set)  # paths that must be read


def make_hostile_folder(root: Path) -> Hostile:
    """Write the hostile folder under ``root`` (created)."""
    hostile = Hostile(root)
    for index, label in enumerate(CLASSES):
        for i in range(PER_CLASS):
            path = f"{label}/{i:02d}.png"
            write_png(root / path, (24, 24), seed=100 * index + i)
            hostile.valid.add(path)
    red = root / "red"
    os.mkfifo(red / "pipe.png")
    hostile.bad["red/pipe.png"] = "not_a_regular_file"
    (red / "zero.png").symlink_to("/dev/zero")
    hostile.bad["red/zero.png"] = "not_a_regular_file"
    with (red / "huge.png").open("wb") as sparse:
        sparse.truncate(SPARSE_BYTES)  # 2 GB that take no disk
    hostile.bad["red/huge.png"] = "too_large"
    (red / "photo.jpg").write_bytes(POSTSCRIPT)
    hostile.bad["red/photo.jpg"] = "unsupported_format"
    write_png(root / "blue" / NOT_UTF8, (24, 24), seed=999)
    hostile.bad[SHOWN_NOT_UTF8] = "bad_file_name"
    (root / "selfloop").symlink_to("selfloop")
    hostile.bad["selfloop"] = "unreadable"
    deep = Path("blue", *["d"] * DEPTH, "deep.png")
    write_png(root / deep, (24, 24), seed=777)
    hostile.valid.add(deep.as_posix())
    return hostile


def ghostscript_stand_in(folder: Path) -> tuple[str, Path]:
    """A ``gs`` in ``folder`` that appends its arguments to a record and fails.

    Returns:
        ``(PATH with folder first, the record file)``: the record exists once gs ran.
    """
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "gs-calls.txt"
    script = folder / "gs"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\nexit 1\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}", record
