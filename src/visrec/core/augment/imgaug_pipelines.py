"""imgaug pipelines written in the parameters, built and checked before training starts.

A pipeline is a list of augmenters of ``imgaug.augmenters``, each written as::

    - Fliplr                                  # name alone: its default arguments
    - Fliplr: 0.5                             # one value: its first argument
    - Affine: {rotate: [-10, 10], scale: [0.9, 1.1]}
    - Sometimes: {p: 0.5, then_list: [GaussianBlur: {sigma: [0, 1.0]}]}
    - SomeOf: {n: [1, 2], children: [Fliplr: 1.0, Cutout: {nb_iterations: 1}]}
    - OneOf: [Fliplr: 1.0, Flipud: 1.0]       # a list: the children

A YAML list of two numbers becomes a tuple, which imgaug reads as a uniform range
(``[-10, 10]``: any angle in between); ``{choice: [0, 90, 180]}`` is a list, which
imgaug reads as a choice of values. ``children``, ``then_list`` and ``else_list`` hold
nested augmenters. The pipeline is the ``Sequential`` of the list.

Each pipeline is built when the parameters are validated, so a wrong augmenter name or
argument fails there with the path of the entry (``augmentation.imgaug.light[2]``).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import numpy as np
import torch

from visrec.core.augment.policies import PolicyError

NESTED = ("children", "then_list", "else_list")


def _augmenters() -> Any:
    # Imported when needed: imgaug imports OpenCV (about 0.5 s).
    import imgaug.augmenters as iaa  # noqa: PLC0415

    return iaa


def augmenter_names() -> list[str]:
    """Every augmenter class of ``imgaug.augmenters``."""
    iaa = _augmenters()
    return sorted(name for name, value in vars(iaa).items() if inspect.isclass(value)
                  and issubclass(value, iaa.meta.Augmenter) and not name.startswith("_"))


def _value(value: Any, path: str) -> Any:
    """YAML values as imgaug reads them: pairs of numbers are ranges, ``choice`` lists."""
    if isinstance(value, dict):
        if set(value) == {"choice"} and isinstance(value["choice"], list):
            return [_value(v, path) for v in value["choice"]]
        return {key: _value(v, f"{path}.{key}") for key, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_value(v, path) for v in value)
    return value


def _entry(entry: Any, path: str) -> tuple[str, Any]:
    """The name and the arguments of one entry, whichever way it is written."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1:
        name, arguments = next(iter(entry.items()))
        if isinstance(name, str):
            return name, arguments
    raise PolicyError(f"{path} = {entry!r}: write an augmenter as Name, Name: value, or "
                      "Name: {argument: value, ...}")


def make_augmenter(entry: Any, path: str) -> Any:
    """One augmenter (with its nested children) from its parameter form.

    Raises:
        PolicyError: Unknown name, or arguments the augmenter refuses; names ``path``.
    """
    iaa = _augmenters()
    name, arguments = _entry(entry, path)
    names = augmenter_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise PolicyError(f"{path}: unknown imgaug augmenter {name!r}; {hint}accepted: the "
                          "augmenters of imgaug.augmenters (Fliplr, Affine, GaussianBlur, "
                          "AdditiveGaussianNoise, Cutout, SomeOf, Sometimes, OneOf, ...)")
    if isinstance(arguments, list) and any(key in inspect.signature(getattr(iaa, name))
                                           .parameters for key in ("children",)):
        arguments = {"children": arguments}
    if isinstance(arguments, dict):
        keywords = {}
        for key, value in arguments.items():
            if key in NESTED and value is not None:
                children = value if isinstance(value, list) else [value]
                keywords[key] = [make_augmenter(child, f"{path}.{key}[{index}]")
                                 for index, child in enumerate(children)]
            else:
                keywords[key] = _value(value, f"{path}.{key}")
        positional: tuple = ()
    elif arguments is None:
        keywords, positional = {}, ()
    else:
        keywords, positional = {}, (_value(arguments, path),)
    try:
        return getattr(iaa, name)(*positional, **keywords)
    except Exception as error:  # imgaug raises many types for bad arguments
        signature = inspect.signature(getattr(iaa, name))
        accepted = [p for p in signature.parameters if p not in ("name", "deterministic",
                                                                 "random_state", "seed")]
        raise PolicyError(f"{path}: {name}({_shown(positional, keywords)}) failed: "
                          f"{type(error).__name__}: {error}; {name} accepts {accepted}") from None


def _shown(positional: tuple, keywords: dict) -> str:
    parts = [repr(v) for v in positional]
    parts += [f"{k}=..." if k in NESTED else f"{k}={v!r}" for k, v in keywords.items()]
    return ", ".join(parts)


def make_imgaug_pipeline(entries: Any, path: str) -> Any:
    """The ``Sequential`` of a pipeline's entries.

    Raises:
        PolicyError: If ``entries`` is not a non-empty list, or an entry is bad.
    """
    if not isinstance(entries, list) or not entries:
        raise PolicyError(f"{path}: an imgaug pipeline is a non-empty list of augmenters, "
                          "e.g. [Fliplr: 0.5, Affine: {rotate: [-10, 10]}]")
    iaa = _augmenters()
    return iaa.Sequential([make_augmenter(entry, f"{path}[{index}]")
                           for index, entry in enumerate(entries)])


class ImgaugTransform:
    """An imgaug pipeline as a transform of C x H x W uint8 tensors.

    The pipeline is built in each process that uses it (DataLoader workers get this
    object pickled). Before each image it is reseeded with a number drawn from torch's
    global generator, as torchvision's transforms draw theirs: torch seeds that generator
    in every DataLoader worker from the loader's generator, and the training loop
    reseeds both every epoch. Runs with the same seed therefore augment alike, and a
    resumed run continues alike. The reseeding costs about half of a two-augmenter
    pipeline's own time per image.

    Args:
        entries: The pipeline's parameter form.
        path: Its parameter path, for errors.
    """

    def __init__(self, entries: list, path: str) -> None:
        self.entries, self.path = entries, path
        self._pipeline: Any = None

    def __getstate__(self) -> dict:
        return {"entries": self.entries, "path": self.path, "_pipeline": None}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` augmented, same shape and dtype."""
        if self._pipeline is None:
            self._pipeline = make_imgaug_pipeline(self.entries, self.path)
        self._pipeline.seed_(int(torch.randint(0, 2**31 - 1, ())))
        array = image.permute(1, 2, 0).numpy()
        augmented = self._pipeline(image=np.ascontiguousarray(array))
        return torch.from_numpy(np.ascontiguousarray(augmented)).permute(2, 0, 1)
