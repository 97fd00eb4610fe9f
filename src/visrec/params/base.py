"""The base of the typed parameter blocks, validated by Kedro before any node runs.

Each node that takes ``params:<block>`` annotates it with a model of this package; Kedro
(>= 1.3) calls ``model_validate`` on the raw YAML before the run starts. A bad value
fails with the full key (``training.epochs``), the value given, and what would be
accepted. The values themselves live in ``conf/base/parameters_*.yml``: the models hold
types and checks, no defaults (``tests/test_params.py`` checks that the two agree).
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError


class ParameterError(ValueError):
    """A parameter has a value that visrec cannot use."""


def format_validation_error(prefix: str, error: ValidationError) -> str:
    """Turn a pydantic error into one line per bad key, prefixed with the block's key.

    Args:
        prefix: The parameter block's key, such as ``"training"``.
        error: The error pydantic raised.

    Returns:
        Lines like ``training.epochs = 0: Input should be greater than or equal to 1``.
    """
    lines = []
    for item in error.errors():
        key = ".".join([prefix, *(str(part) for part in item["loc"])])
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"] or message.startswith(f"{prefix}."):  # names its key already
            lines.append(message)
        elif item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown parameter (check the spelling)")
        elif item["type"] == "missing":
            lines.append(f"{key}: required but not set (conf/base/parameters_*.yml sets "
                         "every key; an override must keep the block's keys)")
        else:
            lines.append(f"{key} = {item['input']!r}: {message}")
    return "\n".join(lines)


class Params(BaseModel):
    """Base for parameter blocks: unknown keys are errors, messages carry the full key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: ClassVar[str] = ""

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Validate ``obj``, raising :class:`ParameterError` with full parameter keys."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as error:
            raise ParameterError("\n" + format_validation_error(cls.key, error)) from None


@cache
def timm_models() -> frozenset[str]:
    """Every architecture name timm knows (listed once per process)."""
    import timm  # noqa: PLC0415 - imported on demand: `import timm` takes seconds

    return frozenset(timm.list_models())


def check_architecture(value: str) -> str:
    """``value`` when it names a timm architecture, else an error with close names.

    Raises:
        ValueError: If timm has no such architecture.
    """
    known = timm_models()
    if value.split(".", 1)[0] not in known:  # a pretrained tag may follow: resnet50.a1_in1k
        close = difflib.get_close_matches(value, known, n=5, cutoff=0.6)
        hint = f"close names: {', '.join(close)}" if close else "see timm.list_models()"
        raise ValueError(f"not a timm architecture; {hint}")
    return value
