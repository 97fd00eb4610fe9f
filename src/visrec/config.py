"""The project's configuration loader: Kedro's, with the DVC parameter file applied last.

DVC changes parameters in ``params.yaml`` (``dvc exp run -S training.epochs=2``); Kedro's
live in ``conf/``. So that both name the same keys and agree on their values,
``params.yaml`` holds every Kedro parameter, ``null`` where it leaves the value to
``conf/``, and the loader merges its other values over ``conf/base`` and
``conf/<env>``, key by key; ``kedro run --params`` still wins over everything::

    conf/base  <  conf/<env> (local, test)  <  params.yaml  <  kedro run --params

``kedro_env`` in ``params.yaml`` is DVC's choice of environment, not a parameter.
``visrec params --sync`` lists new parameters of ``conf/base`` in ``params.yaml`` (keeping
what is set there); ``visrec params --out FILE`` writes the values a run uses, which DVC's
stages track and ``dvc exp show`` reports.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kedro.config import OmegaConfigLoader

from visrec.core.trees import leaves, merged, nested

logger = logging.getLogger(__name__)

PARAMS_FILE = "params.yaml"
"""DVC's parameter file, at the project root (beside ``conf/``)."""
ENV_KEY = "kedro_env"
"""The key of ``params.yaml`` that names the Kedro environment DVC's stages run."""
HEADER = """\
# DVC's parameters (`dvc exp run -S KEY=VALUE` sets them here). Every Kedro parameter is
# listed; null leaves it to conf/base and conf/<kedro_env>, any other value is applied over
# them (but under `kedro run --params`). `visrec params --sync` adds new parameters.
# The values a DVC run used: data/05_model_input/parameters.yml (`dvc exp show`).
"""


class ParamsFileError(ValueError):
    """``params.yaml`` cannot be read as DVC's parameters."""


def read_params_file(path: Path) -> dict[str, Any]:
    """The mapping in ``path``; an empty one when the file is missing or empty.

    Raises:
        ParamsFileError: If it is not YAML or not a mapping of names.
    """
    if not path.is_file():
        return {}
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ParamsFileError(f"{path}: not valid YAML ({error})") from error
    if content is None:
        return {}
    if not isinstance(content, dict) or not all(isinstance(key, str) for key in content):
        raise ParamsFileError(f"{path}: give a mapping of parameter names to values "
                              f"(kedro_env: local, training: {{epochs: 2}}), not {content!r}")
    return content


def overrides(content: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters ``params.yaml`` sets: its non-null leaves (not ``kedro_env``), by
    dotted key."""
    return {key: value for key, value in leaves(content)
            if value is not None and key != ENV_KEY}


def skeleton(parameters: Mapping[str, Any], kept: Mapping[str, Any]) -> dict[str, Any]:
    """``parameters``' tree with every leaf null, except the leaves ``kept`` sets
    (dotted keys), which keep their value; a kept key outside the tree is added."""
    return merged(nested(dict.fromkeys(key for key, _ in leaves(parameters))), nested(kept))


def in_order(tree: Mapping[str, Any], first: list[str]) -> dict[str, Any]:
    """``tree`` with the top-level keys in ``first`` first, in that order."""
    rank = {key: index for index, key in enumerate(first)}
    return {key: tree[key] for key in sorted(tree, key=lambda key: rank.get(key, len(rank)))}


def synced_params_file(content: Mapping[str, Any], base: Mapping[str, Any],
                       order: list[str]) -> str:
    """The text of ``params.yaml`` listing every parameter of ``base`` (conf/base), the
    top-level keys in ``order``, with ``kedro_env`` and the values ``content`` (the
    current file) sets."""
    tree = {ENV_KEY: content.get(ENV_KEY, "local"),
            **in_order(skeleton(base, overrides(content)), order)}
    return HEADER + yaml.safe_dump(tree, sort_keys=False, default_flow_style=False)


class ConfigLoader(OmegaConfigLoader):
    """Kedro's ``OmegaConfigLoader``, with the values ``params.yaml`` (beside the
    configuration folder) sets merged over the parameters of ``conf/``."""

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        if key != "parameters" or self._protocol != "file":
            return config
        path = Path(self.conf_source).parent / PARAMS_FILE
        try:
            setting = overrides(read_params_file(path))
        except ParamsFileError as error:
            raise ParamsFileError(f"{error}; DVC's parameters are applied over conf/") from None
        if not setting:
            return config
        if not getattr(self, "_announced", False):  # once per loader (per session)
            self._announced = True
            logger.info("%s sets %s (over conf/; kedro run --params would win)", path.name,
                        ", ".join(f"{key}={value!r}" for key, value in setting.items()))
        return merged(merged(config, nested(setting)), self.runtime_params or {})
