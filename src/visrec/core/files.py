"""A user's folder, walked and read without trusting it.

Ingestion, prediction and retrieval meet folders from real life: named pipes and device
files behind image names, links that loop, folders that cannot be read or nest hundreds
deep, names in another encoding than UTF-8, files of gigabytes. Here they become a
reason and a detail, as ingestion's quarantine says it, never a hang, a traceback or
memory running out:

- :class:`FolderWalk` walks iteratively (no recursion limit), enters each real folder once
  (by device and inode: a link back up the tree cannot loop) and reports a folder it cannot
  read instead of stopping;
- :func:`read_regular_file` reads only a regular file, after checking its size with
  ``stat``, and reads at most the cap (a file that grows, or a device, cannot run on);
- :func:`shown_path` writes a name that is not UTF-8 with backslash escapes, so that it can
  be listed in a table (Parquet and CSV hold UTF-8 text) and still be found.

Standard library only: ingestion's worker processes import this through
:mod:`visrec.core.images`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

GROWTH_STEP = 2**20  # a file that grows while read is read on in steps of this size


class Rejected(Exception):
    """A file fails a check: ``reason`` is one of ingestion's quarantine reasons, ``detail``
    says why in words."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail[:300]


BAD_NAME = "the name is not valid UTF-8 (shown with \\x escapes); rename the file"
"""The detail of ``bad_file_name``, in ingestion's quarantine and predict's failures."""


def shown_path(path: str) -> str:
    """``path`` as text any table holds: a name that is not valid UTF-8 (kept by Python as
    surrogate escapes) gets backslash escapes of its bytes, ``caf\\xe9.png``."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path


def is_utf8(path: str) -> bool:
    """Whether ``path`` is valid UTF-8 text (no byte Python had to escape)."""
    return shown_path(path) == path


def kind_of(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_regular(info: os.stat_result, max_bytes: int | None, key: str) -> None:
    """Raise :class:`Rejected` unless ``info`` is a regular file of at most ``max_bytes``
    bytes (the parameter ``key`` sets it, named in the detail)."""
    if not stat.S_ISREG(info.st_mode):
        raise Rejected("not_a_regular_file", f"{kind_of(info.st_mode)}: only regular "
                                                "files are read")
    if max_bytes is not None and info.st_size > max_bytes:
        raise Rejected("too_large", f"{info.st_size:,} bytes is more than {key} = "
                                       f"{max_bytes:,}")


def _error_detail(error: OSError) -> str:
    return f"{type(error).__name__}: {error.strerror or error}"


def _read_capped(stream: BinaryIO, size: int, max_bytes: int | None) -> bytes:
    """The file's bytes: as many as ``stat`` said, and one more to see a file that grows,
    then on in steps while it grows, stopping one byte past ``max_bytes``; nothing is
    allocated beyond what the file holds."""
    limit = None if max_bytes is None else max_bytes + 1
    parts: list[bytes] = []
    total, want = 0, size + 1
    while limit is None or total < limit:
        asked = want if limit is None else min(want, limit - total)
        part = stream.read(asked)
        parts.append(part)
        total += len(part)
        if len(part) < asked:  # a regular file reads short only at its end
            break
        want = GROWTH_STEP
    return b"".join(parts)


def read_regular_file(path: str | Path, max_bytes: int | None, key: str) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` bytes.

    The size and type are checked with ``stat`` before opening, again on the open file (it
    may have been swapped in between), and the read stops one byte past the cap. A named
    pipe is opened without blocking, so it cannot hang the reader.

    Args:
        path: The file (a symbolic link is followed).
        max_bytes: The largest file read; None: no cap.
        key: The parameter that sets ``max_bytes``, named in the detail.

    Raises:
        Rejected: ``unreadable``, ``not_a_regular_file``, ``too_large`` or
            ``empty_file``.
    """
    try:
        check_regular(os.stat(path), max_bytes, key)
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
        with open(descriptor, "rb", buffering=0) as stream:
            info = os.fstat(descriptor)
            check_regular(info, max_bytes, key)
            data = _read_capped(stream, info.st_size, max_bytes)
    except OSError as error:
        raise Rejected("unreadable", _error_detail(error)) from None
    except MemoryError:
        raise Rejected("too_large", f"ran out of memory reading it (set {key})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise Rejected("too_large", f"more than {key} = {max_bytes:,} bytes")
    if not data:
        raise Rejected("empty_file", "0 bytes")
    return data


@dataclass(frozen=True)
class WalkItem:
    """One thing found by :class:`FolderWalk`: a file's directory entry, or a folder that
    could not be read (``entry`` None, ``problem`` says why)."""

    path: str
    entry: os.DirEntry | None
    problem: str = ""


@dataclass
class FolderWalk:
    """Visible files under folders of ``root``, in sorted depth-first order.

    Symbolic links to folders are followed, each real folder entered once (by device and
    inode); a folder reached again is recorded in ``skipped_links``. Hidden names (a
    leading dot) are skipped. The walk keeps its own stack, so depth is bounded by the
    file system's path length, not Python's recursion limit.

    Attributes:
        root: The folder paths are relative to.
        seen: ``(device, inode)`` of every folder entered.
        skipped_links: Folders reached a second time, relative to the root.
    """

    root: Path
    seen: set[tuple[int, int]] = field(default_factory=set)
    skipped_links: list[str] = field(default_factory=list)

    def relative(self, path: str) -> str:
        """``path`` (the root, then a separator) relative to the root, forward slashes."""
        relative = path[len(str(self.root)) + 1:]
        return relative if os.sep == "/" else relative.replace(os.sep, "/")

    def enter(self, folder: str | Path) -> str:
        """Mark ``folder`` as entered: ``""`` when it is new, ``"seen"`` when it was
        entered before, else why it cannot be entered."""
        try:
            info = os.stat(folder)
        except OSError as error:
            return _error_detail(error)
        key = (info.st_dev, info.st_ino)
        if key in self.seen:
            self.skipped_links.append(self.relative(str(folder)))
            return "seen"
        self.seen.add(key)
        return ""

    @staticmethod
    def entries(folder: str | Path) -> list[os.DirEntry]:
        """The visible entries of ``folder``, sorted by name (raises OSError)."""
        with os.scandir(folder) as scan:
            return sorted((e for e in scan if not e.name.startswith(".")),
                          key=lambda e: e.name)

    def files(self, folder: str | Path) -> Iterator[WalkItem]:
        """Every visible file under ``folder`` (entered already), and every folder under it
        that cannot be read (``entry`` None)."""
        stack: list[Iterator[os.DirEntry]] = []
        try:
            stack.append(iter(self.entries(folder)))
        except OSError as error:
            yield WalkItem(self.relative(str(folder)) + "/", None, _error_detail(error))
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            try:
                is_dir = entry.is_dir()  # follows a symbolic link
            except OSError:
                is_dir = False  # a link that loops or dangles: a file that fails its stat
            if not is_dir:
                yield WalkItem(self.relative(entry.path), entry)
                continue
            problem = self.enter(entry.path)
            if problem == "seen":
                continue
            if not problem:
                try:
                    stack.append(iter(self.entries(entry.path)))
                    continue
                except OSError as error:
                    problem = _error_detail(error)
            yield WalkItem(self.relative(entry.path) + "/", None, problem)
