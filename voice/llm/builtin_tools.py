"""Built-in tools: the current date and time, and a safe calculator.

Both are sync and cheap; the registry runs them in a worker thread. Errors are
raised as ``ValueError`` with a message meant for the model to read.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voice.llm.tools import Tool, ToolRegistry

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def format_datetime(moment: datetime, timezone: str) -> str:
    """``moment`` (timezone-aware) in IANA ``timezone``, e.g.
    ``"Monday 23 November 2026, 16:05 (Europe/Paris, UTC+01:00)"``."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Paris', "
            "'America/New_York' or 'UTC'"
        ) from None
    local = moment.astimezone(zone)
    offset = local.strftime("%z") or "+0000"
    return (
        f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}, "
        f"{local:%H:%M} ({timezone}, UTC{offset[:3]}:{offset[3:]})"
    )


def current_datetime(timezone: str = "UTC") -> str:
    """Get the current date and time in a time zone.

    Args:
        timezone: IANA time zone name, for example "Europe/Paris" or "America/New_York".
    """
    return format_datetime(datetime.now(UTC), timezone)


# --- calculator ---------------------------------------------------------------

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300

_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitXor: operator.pow,  # "2^10": models write powers this way; nobody asks for XOR
}
def _sqrt(value: float) -> float:
    if value < 0:
        raise ValueError("cannot take the square root of a negative number")
    return math.sqrt(value)


_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": _sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _power(base: float, exponent: float) -> float:
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"exponent {exponent:g} is too large (limit {MAX_EXPONENT})")
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > 300:
        raise ValueError("result is too large")
    if base == 0 and exponent < 0:
        raise ValueError("division by zero")
    return operator.pow(base, exponent)


def _checked(value: float) -> float:
    if isinstance(value, complex):
        raise ValueError("result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError("result is too large")
    return value


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return _checked(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow | ast.BitXor):
            return _checked(_power(left, right))
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise ValueError("division by zero")
        return _checked(_BINARY[type(node.op)](left, right))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(arg) for arg in node.args]
        if node.func.id == "round" and len(args) == 2:
            if args[1] != int(args[1]) or abs(args[1]) > 15:
                raise ValueError("round() takes a whole number of digits between -15 and 15")
            args[1] = int(args[1])
        return _checked(_FUNCTIONS[node.func.id](*args))
    if isinstance(node, ast.Name | ast.Call | ast.Attribute):
        raise ValueError(
            "only numbers, + - * / // % ** ( ), sqrt, abs, round, min, max, pi and e are allowed"
        )
    raise ValueError(f"unsupported syntax: {type(node).__name__}")


def _format_number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly, e.g. "(12.5 * 4) / 3" or "sqrt(2) * pi".

    Args:
        expression: Arithmetic with numbers, + - * / // % ** and parentheses, and the
            functions sqrt, abs, round, min, max and constants pi, e.
    """
    text = expression.replace("×", "*").replace("÷", "/").strip()
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression is too long (limit {MAX_EXPRESSION_CHARS} characters)")
    if not text:
        raise ValueError("expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
        value = _evaluate(tree)
    except (SyntaxError, RecursionError, MemoryError):
        raise ValueError(f"cannot parse {expression!r} as arithmetic") from None
    except (TypeError, OverflowError, ArithmeticError) as exc:
        raise ValueError(f"cannot evaluate {expression!r}: {exc}") from None
    return _format_number(value)


BUILTIN_TOOLS: dict[str, Tool] = {
    "datetime": Tool.from_function(current_datetime),
    "calculator": Tool.from_function(calculate),
}


def registry_from_names(names: list[str]) -> ToolRegistry:
    """A registry of the named built-in tools (``datetime``, ``calculator``).

    Raises ``ValueError`` naming the unknown entry and the accepted names.
    """
    unknown = [name for name in names if name not in BUILTIN_TOOLS]
    if unknown:
        raise ValueError(
            f"unknown tool(s) {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(BUILTIN_TOOLS)}"
        )
    return ToolRegistry([BUILTIN_TOOLS[name] for name in dict.fromkeys(names)])
