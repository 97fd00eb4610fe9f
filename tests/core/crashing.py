"""A stand-in for visrec.core.images.inspect_files whose worker dies on some files.

Importable by spawned worker processes, unlike a function defined inside a test.
"""

from __future__ import annotations

import os

from visrec.core.images import Inspection, InspectSettings, inspect_files

CRASH_MARK = "crash"


def inspect_or_die(root: str, items: list[tuple[str, str]],
                   settings: InspectSettings) -> list[Inspection]:
    """Kill this process, as a segfaulting decoder would, when a path contains the mark."""
    if any(CRASH_MARK in path for path, _ in items):
        os._exit(139)
    return inspect_files(root, items, settings)
