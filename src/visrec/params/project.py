"""The whole parameter tree of a run, checked before its first node: every top-level key is
known, ``seed`` is a usable seed and every block is valid, whichever pipelines run.

Kedro validates only the typed ``params:`` inputs of the nodes that run; a misspelt block
(``--params "trainig.epochs=5"``) or a bad ``seed`` would otherwise be ignored or fail
half-way through a run.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from visrec.params.base import ParameterError

SEED_MAX = 2**63 - 1
"""The largest seed every generator takes (torch's is a signed 64-bit number)."""


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{key}: not a visrec parameter; {hint}the top-level keys are {', '.join(known)}"


def seed_problem(value: Any) -> str | None:
    """Why ``value`` cannot be the ``seed``, or None when it can."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        return (f"seed = {value!r}: give a whole number from 0 to 2**63 - 1 "
                "(conf/base/parameters.yml, or --params \"seed=42\")")
    return None


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Raise when a top-level key is unknown, ``seed`` is bad or missing, or a block is
    missing or invalid; the message lists every problem, one per line, by full key.

    Raises:
        ParameterError: With every problem found.
    """
    from visrec.params import BLOCKS, TuningParams  # noqa: PLC0415 - the blocks import torch

    known = ["seed", *BLOCKS]
    problems = [_unknown(str(key), known) for key in parameters if key not in known]
    if "seed" not in parameters:
        problems.append("seed: missing (conf/base/parameters.yml sets it)")
    elif (problem := seed_problem(parameters["seed"])) is not None:
        problems.append(problem)
    for key, model in BLOCKS.items():
        if key not in parameters:
            problems.append(f"{key}: missing (conf/base/parameters_{key}.yml defines it)")
            continue
        try:
            model.model_validate(parameters[key])
        except ParameterError as error:
            problems.append(str(error).strip())
    if not problems:  # the search space against the blocks its values go into
        try:
            TuningParams.model_validate(parameters["tuning"]).search_space(
                parameters["training"], parameters["augmentation"], parameters["class_balance"])
        except ParameterError as error:
            problems.append(str(error).strip())
    if problems:
        raise ParameterError("invalid parameters:\n" + "\n".join(problems))
