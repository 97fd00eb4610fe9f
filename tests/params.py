"""Parameter blocks for tests: conf/base's values, validated, with a test's overrides.

The parameter models hold no defaults (conf/base is the one place for values), so a
test takes a block from conf/base and changes what it needs::

    base_params(TrainingParams, model="test_resnet", epochs=2, schedule={"warmup_epochs": 1})
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from kedro.config import OmegaConfigLoader

from tests.conftest import PROJECT_ROOT
from visrec.params import Params
from visrec.params.tuning import merged
from visrec.settings import CONFIG_LOADER_ARGS

P = TypeVar("P", bound=Params)


@cache
def base_values() -> dict[str, Any]:
    """Every parameter of conf/base, as Kedro loads them (no conf/local)."""
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"),
                               **(CONFIG_LOADER_ARGS | {"default_run_env": "base"}))
    return dict(loader["parameters"])


def base_raw(kind: type[Params], /, **overrides: Any) -> dict[str, Any]:
    """The block of ``kind`` in conf/base with ``overrides`` merged in, not validated."""
    block: Any = base_values()
    for part in kind.key.split("."):
        block = block[part]
    return merged(block, overrides)


def base_params(kind: type[P], /, **overrides: Any) -> P:
    """The block of ``kind`` in conf/base with ``overrides`` merged in, validated."""
    return kind.model_validate(base_raw(kind, **overrides))
