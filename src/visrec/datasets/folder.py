"""Base of visrec's datasets that own a folder rather than a single file."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import ImagePreview

Loaded = TypeVar("Loaded")
Saved = TypeVar("Saved")


class FolderDataset(AbstractDataset[Saved, Loaded], Generic[Loaded, Saved]):
    """A Kedro dataset stored as a folder of files at ``path``: loads ``Loaded``, saves
    ``Saved`` (Kedro's ``AbstractDataset`` takes them in the other order)."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            path: The folder.
            metadata: Free-form metadata, ignored by Kedro.
        """
        self._path = Path(path)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


def replace_folder(path: Path, write: Callable[[Path], None]) -> None:
    """Replace the folder ``path`` by what ``write`` puts into a new folder, atomically.

    ``write`` fills a staging folder beside ``path``; the old folder is then renamed
    away and the staging folder renamed into place, so readers see the old folder or the
    new one, never a mix, and a crash while writing leaves the old folder whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(staging)
        # mkdtemp and some writers create owner-only entries; give the usual permissions.
        for entry in (staging, *staging.rglob("*")):
            entry.chmod((0o777 if entry.is_dir() else 0o666) & ~umask)
        retired = path.with_name(f".{path.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        if path.exists():
            path.rename(retired)
        staging.rename(path)
        shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class FigureFolderDataset(FolderDataset[dict[str, Path], dict[str, Any]]):
    """A folder of PNG figures, one per key of the saved dict, replaced as a whole.

    Loading gives the paths of the PNGs by key (figures are for people, not for nodes).
    """

    def __init__(self, path: str, dpi: int = 100, metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            path: The folder.
            dpi: Resolution of the PNGs.
            metadata: Free-form metadata, ignored by Kedro.
        """
        super().__init__(path, metadata)
        self._dpi = dpi

    def load(self) -> dict[str, Path]:
        """The PNG files of the folder by name (without the suffix)."""
        return {png.stem: png for png in sorted(self._path.glob("*.png"))}

    def save(self, data: dict[str, Any]) -> None:
        """Write each figure as ``<key>.png``, replacing the folder."""

        def write(folder: Path) -> None:
            for name, figure in data.items():
                figure.savefig(folder / f"{name}.png", dpi=self._dpi)

        replace_folder(self._path, write)

    def preview(self) -> ImagePreview:
        """The folder's first figure (by name) as base64 PNG, for ``kedro viz``."""
        figures = self.load()
        if not figures:
            raise DatasetError(f"no PNG in '{self._path}': run the pipeline that writes it")
        first = next(iter(figures.values()))
        return ImagePreview(base64.b64encode(first.read_bytes()).decode("ascii"))

    def _exists(self) -> bool:
        return self._path.is_dir()
