"""The fault suite (``pytest -m faults``), in process: a hostile folder is listed, checked
and read by ingestion and by predict's reader; each bad file gets its reason, nothing hangs,
nothing raises, and Ghostscript is never started. docs/reliability.md lists each case."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from PIL import EpsImagePlugin

from tests.conftest import write_png
from tests.hostile import (
    NOT_UTF8,
    POSTSCRIPT,
    SHOWN_NOT_UTF8,
    ghostscript_stand_in,
    make_hostile_folder,
)
from visrec.core.data import list_folder, make_manifest
from visrec.core.files import FolderWalk, Rejected, read_regular_file, shown_path
from visrec.core.images import InspectSettings, inspect_files, load_image, read_checked
from visrec.core.serve import list_inputs

pytestmark = pytest.mark.faults


@pytest.fixture
def no_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recording ``gs`` first on PATH, and Pillow made to look for it again."""
    path, record = ghostscript_stand_in(tmp_path / "bin")
    monkeypatch.setenv("PATH", path)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return record


def test_the_ghostscript_stand_in_records_an_unrestricted_pillow(tmp_path: Path):
    """The control: Pillow left to itself hands PostScript named .jpg to gs."""
    path, record = ghostscript_stand_in(tmp_path / "bin")
    (tmp_path / "photo.jpg").write_bytes(POSTSCRIPT)
    subprocess.run([sys.executable, "-c", "from PIL import Image\ntry:\n"
                    "    Image.open('photo.jpg').load()\nexcept Exception:\n    pass"],
                   cwd=tmp_path, env=os.environ | {"PATH": path}, check=True, timeout=60)
    assert record.exists()


def test_ingestion_quarantines_every_hostile_file(tmp_path: Path, no_ghostscript: Path):
    hostile = make_hostile_folder(tmp_path / "in")
    manifest, quarantine, _ = make_manifest(hostile.root, 0.0, 0.0, seed=0, workers=2,
                                            max_bytes=2**30)
    assert dict(zip(quarantine["path"], quarantine["reason"], strict=True)) == hostile.bad
    assert set(manifest["path"]) == hostile.valid
    details = dict(zip(quarantine["path"], quarantine["detail"], strict=True))
    assert details["red/pipe.png"] == "a named pipe (FIFO): only regular files are read"
    assert details["red/zero.png"] == "a character device: only regular files are read"
    assert details["red/huge.png"] == ("2,147,483,648 bytes is more than ingestion.max_bytes "
                                       "= 1,073,741,824")
    assert details["red/photo.jpg"].startswith("EPS: visrec reads BMP, GIF, JPEG, PNG")
    assert "not valid UTF-8" in details[SHOWN_NOT_UTF8]
    assert "Too many levels of symbolic links" in details["selfloop"]
    assert not no_ghostscript.exists()


def test_predicts_reader_reports_every_hostile_file(tmp_path: Path, no_ghostscript: Path):
    hostile = make_hostile_folder(tmp_path / "in")
    root, paths, unlisted = list_inputs(str(hostile.root), tmp_path)
    assert dict(zip(unlisted["path"], unlisted["reason"], strict=True)) == {
        SHOWN_NOT_UTF8: "bad_file_name"}
    found = {}
    for path in paths:
        try:
            read_checked(root / path, 3, 10**8, 2**30)
        except Rejected as rejected:
            found[path] = rejected.reason
    expected = {path: reason for path, reason in hostile.bad.items()
                if reason != "bad_file_name"}
    assert found == expected
    assert set(paths) - set(found) == hostile.valid
    assert not no_ghostscript.exists()


def test_a_file_growing_past_the_cap_is_not_read_on(tmp_path: Path):
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG" + bytes(5000))
    with pytest.raises(Rejected, match=re.escape("too_large: 5,004 bytes is more than "
                                                 "x.max_bytes = 4,096")):
        read_regular_file(path, 4096, "x.max_bytes")
    assert read_regular_file(path, 5004, "x.max_bytes")[:4] == b"\x89PNG"


def test_the_worker_and_the_file_readers_refuse_postscript(tmp_path: Path,
                                                            no_ghostscript: Path):
    (tmp_path / "photo.jpg").write_bytes(POSTSCRIPT)
    settings = InspectSettings(10**8, 16, 3, 2**20)
    found = inspect_files(str(tmp_path), [("photo.jpg", "")], settings)[0]
    assert (found.reason, found.pixels) == ("unsupported_format", None)
    with pytest.raises(Rejected, match="unsupported_format"):
        read_checked(tmp_path / "photo.jpg", 3, 10**8, 2**20, key="retrieve")
    with pytest.raises(Exception, match="cannot identify image file"):
        load_image(tmp_path / "photo.jpg")  # a file changed since ingestion checked it
    assert not no_ghostscript.exists()


def test_an_unreadable_folder_is_a_row_not_an_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    """Run as root, chmod cannot make a folder unreadable: the scan is made to fail."""
    root = tmp_path / "in"
    for label in ("a", "b"):
        write_png(root / label / "ok.png", seed=ord(label))
    write_png(root / "a" / "locked" / "x.png", seed=1)
    scandir = os.scandir

    def refuse(folder):
        if str(folder).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return scandir(folder)

    monkeypatch.setattr("visrec.core.files.os.scandir", refuse)
    listing, classes = list_folder(root)
    rows = listing.set_index("path")[["label", "reason", "detail"]].to_dict("index")
    assert rows["a/locked/"] == {"label": "a", "reason": "unreadable",
                                 "detail": "folder: PermissionError: Permission denied"}
    assert rows["a/ok.png"]["reason"] == rows["b/ok.png"]["reason"] == ""
    assert classes == ["a", "b"]
    _, paths, unlisted = list_inputs(str(root), tmp_path)
    assert paths == ["a/ok.png", "b/ok.png"]
    assert unlisted.to_dict("records") == [{
        "path": "a/locked/", "reason": "unreadable",
        "detail": "folder: PermissionError: Permission denied"}]


def _remove_chain(top: Path, depth: int) -> None:
    """Remove ``top/d/d/.../d`` bottom up: shutil.rmtree (and pytest's clean-up of old
    temporary folders with it) recurses once per level."""
    folders = [top]
    for _ in range(depth):
        folders.append(folders[-1] / "d")
    for folder in reversed(folders):
        for child in folder.iterdir():
            if not child.is_dir():
                child.unlink()
        folder.rmdir()


def test_nesting_deeper_than_pythons_recursion_limit(tmp_path: Path):
    depth = sys.getrecursionlimit() + 100
    deep = Path(*["d"] * depth)
    folder = tmp_path / "in" / "a"
    folder.mkdir(parents=True)
    for _ in range(depth):  # one at a time: os.makedirs recurses too
        folder = folder / "d"
        folder.mkdir()
    write_png(folder / "x.png", seed=2)
    try:
        _check_deep_listing(tmp_path, deep)
    finally:
        _remove_chain(tmp_path / "in" / "a", depth)


def _check_deep_listing(tmp_path: Path, deep: Path) -> None:
    write_png(tmp_path / "in" / "b" / "y.png", seed=3)
    listing, _ = list_folder(tmp_path / "in")
    assert listing.loc[listing["reason"] == "", "path"].tolist() == [
        f"a/{deep.as_posix()}/x.png", "b/y.png"]
    walk = FolderWalk(tmp_path / "in")
    walk.enter(walk.root)
    assert [item.path for item in walk.files(walk.root)] == [
        f"a/{deep.as_posix()}/x.png", "b/y.png"]


def test_names_that_are_not_utf8_are_shown_with_escapes():
    assert shown_path(NOT_UTF8) == "caf\\xe9.png"
    assert shown_path("résumé.png") == "résumé.png"


def test_a_read_allocates_what_the_file_holds_not_the_cap(tmp_path: Path):
    """A 1 GiB cap must not mean a 1 GiB buffer per image (a machine that does not
    overcommit memory would refuse every file)."""
    path = tmp_path / "small.png"
    path.write_bytes(b"\x89PNG" + bytes(1000))
    tracemalloc.start()
    try:
        data = read_regular_file(path, 2**30, "x.max_bytes")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) == 1004 and peak < 2**20
