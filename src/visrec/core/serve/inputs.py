"""What to classify: a folder (any layout), a list file, an image file or a list of paths,
and what could not be listed (unreadable folders, names that are not UTF-8)."""

from __future__ import annotations

from collections.abc import Sequence, Set
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from visrec.core.files import BAD_NAME, FolderWalk, is_utf8, shown_path

LIST_SUFFIXES = (".txt", ".lst")  # a file of paths, one per line
FAILURE_COLUMNS = ["path", "reason", "detail"]


class PredictInputError(ValueError):
    """``predict.input`` names nothing visrec can read."""


class InputFiles(NamedTuple):
    """The files to read: ``paths`` relative to ``root`` (absolute ones kept), and what
    could not be listed (``path``, ``reason``, ``detail``: a folder that cannot be read, a
    name that is not UTF-8, shown with escapes)."""

    root: Path
    paths: list[str]
    failures: pd.DataFrame

    def without(self, done: Set[str]) -> InputFiles:
        """The files and failures not named in ``done`` (what a resumed run has left)."""
        if not done:
            return self
        return InputFiles(self.root, [path for path in self.paths if path not in done],
                          self.failures[~self.failures["path"].isin(done)]
                          .reset_index(drop=True))


def _walk(folder: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Every non-hidden file under ``folder``, as sorted paths relative to it, and the
    folders that could not be read.

    Linked folders are followed (a folder of links to image folders is a common layout),
    each real folder once, so a link back up the tree cannot loop.
    """
    walk = FolderWalk(folder)
    walk.enter(folder)
    found, problems = [], []
    for item in walk.files(folder):
        if item.entry is None:
            problems.append((shown_path(item.path), "unreadable", f"folder: {item.problem}"))
        else:
            found.append(item.path)
    return sorted(found), problems


def _readable_names(root: Path, paths: list[str], problems: list[tuple[str, str, str]]
                    ) -> InputFiles:
    """Split off the paths that are not valid UTF-8 (``bad_file_name``)."""
    kept, bad = [], []
    for path in paths:
        if is_utf8(path):
            kept.append(path)
        else:
            bad.append((shown_path(path), "bad_file_name", BAD_NAME))
    return InputFiles(root, kept, pd.DataFrame(problems + bad, columns=FAILURE_COLUMNS))


def list_inputs(spec: str | Sequence[str] | None, base: Path,
                key: str = "predict.input") -> InputFiles:
    """The files to classify: a folder (recursively), a ``.txt`` list of paths, a file, or
    a list of paths.

    Args:
        spec: ``predict.input`` (or the parameter ``key`` names).
        base: Folder that relative paths are resolved against (the project root).
        key: The parameter, for messages.

    Returns:
        The paths relative to their root (the folder, the list file's folder, or ``base``
        for a list), in the order given (a folder's files sorted), and what could not be
        listed.

    Raises:
        PredictInputError: Naming the parameter, the value and what is accepted.
    """
    accepted = ("give a folder of images (any layout), a .txt file with one image path per "
                "line, an image file, or a list of paths")
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        raise PredictInputError(f"{key} is not set; {accepted}, for example "
                                f"--params \"{key}=data/new_images\"")
    if not isinstance(spec, str):
        if not spec:
            raise PredictInputError(f"{key} = []: the list is empty; {accepted}")
        return _readable_names(base, [str(p) for p in spec], [])
    path = (base / spec).resolve()
    if path.is_dir():
        files, problems = _walk(path)
        if not files and not problems:
            raise PredictInputError(f"{key} = {spec!r}: the folder has no files")
        return _readable_names(path, files, problems)
    if not path.is_file():
        raise PredictInputError(f"{key} = {spec!r}: no such file or folder "
                                f"({path}); {accepted}")
    if path.suffix.lower() in LIST_SUFFIXES:
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        return _readable_names(path.parent, [line.strip() for line in lines if line.strip()
                                             and not line.lstrip().startswith("#")], [])
    return _readable_names(path.parent, [path.name], [])
