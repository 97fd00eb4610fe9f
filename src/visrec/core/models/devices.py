"""Where models run."""

from __future__ import annotations

import torch


def select_device(requested: str = "auto", key: str = "training.device") -> torch.device:
    """``auto``: CUDA when a GPU is visible, else the CPU.

    Args:
        requested: ``auto``, ``cpu`` or ``cuda``.
        key: The parameter that asked, named in the error.

    Raises:
        ValueError: If ``cuda`` is requested and no GPU is visible.
    """
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key} = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
