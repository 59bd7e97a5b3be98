"""JSON schema from a Python signature, and argument checking against it.

Pure functions, no I/O. The supported annotations are ``str``, ``int``,
``float``, ``bool``, ``Literal[...]``, :class:`enum.Enum` subclasses,
``list[X]`` and ``X | None``. A parameter is required when it has no default.
:func:`parameters_schema` and :func:`bind_arguments` walk the same annotations,
so whatever the schema admits is exactly what the binder accepts.
"""

from __future__ import annotations

import enum
import inspect
import re
import types
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

_SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns?|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class ArgumentError(ValueError):
    """Arguments do not match a tool's signature; the message says which and why."""


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph, one line) and Google-style ``Args:`` descriptions."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line.strip()):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    section, item_indent, current = "", -1, ""
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped:
            continue
        if indent == 0:
            header = _SECTION.match(stripped)
            section, item_indent, current = (header.group(1) if header else ""), -1, ""
            continue
        if section not in ("Args", "Arguments", "Parameters"):
            continue
        if item_indent < 0:
            item_indent = indent
        match = _ARG_LINE.match(stripped)
        if indent == item_indent and match:
            current = match.group(1).lstrip("*")
            args[current] = match.group(2).strip()
        elif indent > item_indent and current:
            args[current] = f"{args[current]} {stripped}".strip()
    return " ".join(summary), args


def _is_optional(annotation: Any) -> tuple[bool, Any]:
    """``(True, X)`` for ``X | None`` / ``Optional[X]``, else ``(False, annotation)``."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == len(get_args(annotation)) - 1:
            if len(members) != 1:
                raise TypeError(f"unions other than X | None are not supported: {annotation}")
            return True, members[0]
        raise TypeError(f"unions other than X | None are not supported: {annotation}")
    return False, annotation


def _json_type(values: list[Any]) -> str:
    kinds = {_SCALARS.get(type(v)) for v in values}
    if len(kinds) != 1 or None in kinds:
        raise TypeError(f"enum values must all be str, int, float or bool: {values}")
    return kinds.pop() or "string"


def type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON schema of one supported annotation; raises ``TypeError`` otherwise."""
    nullable, inner = _is_optional(annotation)
    if get_origin(inner) is Literal:
        values = list(get_args(inner))
        schema: dict[str, Any] = {"type": _json_type(values), "enum": values}
    elif isinstance(inner, type) and issubclass(inner, enum.Enum):
        values = [member.value for member in inner]
        schema = {"type": _json_type(values), "enum": values}
    elif get_origin(inner) is list:
        (item,) = get_args(inner) or (None,)
        if item is None:
            raise TypeError("list parameters need an item type, e.g. list[str]")
        schema = {"type": "array", "items": type_schema(item)}
    elif inner in _SCALARS:
        schema = {"type": _SCALARS[inner]}
    else:
        raise TypeError(f"unsupported parameter type for a tool: {inner!r}")
    if nullable:
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def _parameters(func: Callable[..., Any]) -> list[tuple[inspect.Parameter, Any]]:
    hints = get_type_hints(func)
    result = []
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(f"tool parameter {param.name!r} must be a plain named parameter")
        if param.name not in hints:
            raise TypeError(f"tool parameter {param.name!r} has no type annotation")
        result.append((param, hints[param.name]))
    return result


def parameters_schema(func: Callable[..., Any], descriptions: dict[str, str]) -> dict[str, Any]:
    """The ``{"type": "object", ...}`` schema of ``func``'s parameters."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param, annotation in _parameters(func):
        schema = type_schema(annotation)
        if param.name in descriptions:
            schema["description"] = descriptions[param.name]
        if param.default is param.empty:
            required.append(param.name)
        else:
            default = param.default.value if isinstance(param.default, enum.Enum) else param.default
            if default is None or type(default) in _SCALARS:
                schema["default"] = default
        properties[param.name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _convert(value: Any, annotation: Any, where: str) -> Any:
    nullable, inner = _is_optional(annotation)
    if value is None:
        if nullable:
            return None
        raise ArgumentError(f"{where} must not be null")
    if get_origin(inner) is Literal:
        if value in get_args(inner) and type(value) in {type(v) for v in get_args(inner)}:
            return value
        raise ArgumentError(f"{where} must be one of {list(get_args(inner))}, got {value!r}")
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        for member in inner:
            if member.value == value and type(member.value) is type(value):
                return member
        raise ArgumentError(f"{where} must be one of {[m.value for m in inner]}, got {value!r}")
    if get_origin(inner) is list:
        if not isinstance(value, list):
            raise ArgumentError(f"{where} must be an array, got {type(value).__name__}")
        (item,) = get_args(inner)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if inner is float and type(value) in (int, float):
        return float(value)
    if type(value) is inner:
        return value
    raise ArgumentError(f"{where} must be {_SCALARS[inner]}, got {type(value).__name__} {value!r}")


def bind_arguments(func: Callable[..., Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """Checked keyword arguments for ``func`` (enum values become members, ints floats).

    Raises :class:`ArgumentError` for unknown, missing or wrongly typed arguments.
    """
    params = _parameters(func)
    known = {param.name for param, _ in params}
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise ArgumentError(f"unknown argument(s) {', '.join(unknown)}; expected {sorted(known)}")
    bound: dict[str, Any] = {}
    for param, annotation in params:
        if param.name in arguments:
            bound[param.name] = _convert(arguments[param.name], annotation, repr(param.name))
        elif param.default is param.empty:
            raise ArgumentError(f"missing required argument {param.name!r}")
    return bound
