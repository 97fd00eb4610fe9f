"""Options written as calls, ``name`` or ``name(key=value, ...)``, read with :mod:`ast`.

Augmentation policies (``randaugment(n=2, m=9) + mixup(alpha=0.2)``) and metric-learning
losses (``triplet(margin=0.1, mining=semihard)``) are strings in this syntax. Nothing is
evaluated: bare words are strings, ``true``/``false``/``null`` are what they say, and
numbers, strings and tuples of them are values.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

OptionsT = TypeVar("OptionsT", bound=BaseModel)

WORDS = {"true": True, "false": False, "null": None, "none": None}


def format_value(value: Any) -> str:
    """``value`` as a call string writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def literal(node: ast.expr, text: str, error: type[ValueError]) -> Any:
    """The value of an argument node: numbers, words, and tuples or lists of them.

    Raises:
        error: If the node is no value (an expression, a call, ...).
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool):
        return node.value
    if isinstance(node, ast.Name):
        return WORDS.get(node.id.lower(), node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = literal(node.operand, text, error)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(literal(element, text, error) for element in node.elts)
    raise error(f"{ast.get_source_segment(text, node)!r} is not a value: write numbers, "
                "words, true/false, or (low, high)")


def call_arguments(call: ast.Call, name: str, fields: Iterable[str], positional: str | None,
                   text: str, error: type[ValueError]) -> dict[str, Any]:
    """The keyword arguments of a call, and the one positional value some names accept.

    Args:
        call: The parsed call.
        name: Its name, for messages.
        fields: The arguments it accepts, for messages.
        positional: The argument a bare positional value sets, or None.
        text: The whole string, for messages.
        error: The exception to raise.
    """
    if call.args and (positional is None or len(call.args) > 1):
        raise error(f"{name} takes keyword arguments only: "
                    f"{name}({', '.join(f'{k}=...' for k in fields)})")
    arguments: dict[str, Any] = {}
    if call.args and positional is not None:
        arguments[positional] = literal(call.args[0], text, error)
    for keyword in call.keywords:
        if keyword.arg is None:
            raise error(f"{name}: ** is not accepted")
        if keyword.arg in arguments:
            raise error(f"{name}: argument {keyword.arg!r} is given twice")
        arguments[keyword.arg] = literal(keyword.value, text, error)
    return arguments


def parse_expression(text: str, error: type[ValueError], what: str, hint: str) -> ast.expr:
    """The expression tree of ``text``.

    Raises:
        error: If ``text`` is empty or not an expression; the message says ``what`` it
            is (``a policy``) and, by ``hint``, what to write.
    """
    if not isinstance(text, str) or not text.strip():
        raise error(f"{what} is a non-empty string; {hint}")
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as problem:
        raise error(f"cannot be read ({problem.msg}); {hint}") from None


def call_name(node: ast.expr) -> tuple[str | None, ast.Call | None]:
    """``(name, call)`` of a ``name`` or ``name(...)`` node; name None when it is neither."""
    call = node if isinstance(node, ast.Call) else None
    name_node = call.func if call is not None else node
    return (name_node.id if isinstance(name_node, ast.Name) else None), call


def build_options(kind: type[OptionsT], name: str, arguments: dict[str, Any],
                  error: type[ValueError]) -> OptionsT:
    """``kind(**arguments)``, its validation errors as one message naming each argument.

    Raises:
        error: With each unknown argument and what is accepted, or each bad value.
    """
    try:
        return kind(**arguments)
    except ValidationError as problem:
        problems = []
        for issue in problem.errors():
            key = ".".join(str(part) for part in issue["loc"])
            if issue["type"] == "extra_forbidden":
                problems.append(f"{name} has no argument {key!r}; accepted: "
                                f"{list(kind.model_fields) or 'none'}")
            else:
                problems.append(f"{name} {key} = {issue.get('input')!r}: "
                                f"{issue['msg'].removeprefix('Value error, ')}")
        raise error("; ".join(problems)) from None
