"""The one input-safety rule: text and numbers the database can store and compare.

PostgreSQL refuses NUL in text (and `\\u0000` in JSONB), psycopg cannot encode a lone surrogate, and a bigint
holds 64 signed bits. Input breaking these rules is refused where it enters (web requests, JSON bodies,
cursors, the CLI), so it never reaches a query and never turns into a 500.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from app.services.errors import InvalidInput

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1  # an Integer column on PostgreSQL
# Deeper than any body the API takes or a payment provider sends; bounds every later walk of the value.
MAX_JSON_DEPTH = 32
MAX_ACTOR_LENGTH = 255  # billing_admin_audit.actor
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UnsafeValue(ValueError):
    """A value the database cannot store; `field` names where it is (a dotted path in a JSON body)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def text_problem(value: str) -> str | None:
    """Why the database cannot store or compare `value`, or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    return (
        "contains a NUL character"
        if found.group() == "\x00"
        else "contains invalid Unicode (a lone surrogate, or bytes that are not UTF-8)"
    )


def check_text(field: str, value: str, *, max_length: int | None = None) -> str:
    """`value` when the database can store it (and it fits `max_length`), else InvalidInput naming `field`."""
    if problem := text_problem(value):
        raise InvalidInput(field, problem)
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(field, f"must be at most {max_length} characters")
    return value


def check_actor_name(name: str) -> str:
    """An actor name for the audit log: 1-255 characters the database can store."""
    if not name:
        raise InvalidInput("actor", "must not be empty")
    return check_text("actor", name, max_length=MAX_ACTOR_LENGTH)


def printable(value: str) -> str:
    """`value` with unstorable characters replaced, safe to echo back in an error message."""
    return _UNSTORABLE.sub("\ufffd", value)


def loads_json(data: bytes | str) -> Any:
    """Parse a JSON document strictly, or raise ValueError saying why (UnsafeValue names the field).

    Refused: bytes that are not UTF-8, NaN and Infinity, numbers that overflow a float or a bigint, more than
    4300 digits (Python's own limit), nesting deeper than MAX_JSON_DEPTH, and unstorable text in keys or values.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the body is not UTF-8") from None
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"the document is nested deeper than {MAX_JSON_DEPTH} levels") from None
    check_json_value(value)
    return value


def check_json_value(value: Any) -> None:
    """Raise UnsafeValue for the first key or value of `value` the database cannot store (walked without recursion).

    A document nested deeper than MAX_JSON_DEPTH is a ValueError: unreadable as a whole, not one bad field.
    """
    for path, depth, item in _walk(value):
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"the document is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, str) and (problem := text_problem(item)):
            raise UnsafeValue(path or "(body)", problem)
        if isinstance(item, int) and not isinstance(item, bool) and not INT64_MIN <= item <= INT64_MAX:
            raise UnsafeValue(path or "(body)", "is outside the signed 64-bit integer range")


def _walk(value: Any) -> Iterator[tuple[str, int, Any]]:
    """(dotted path, depth, item) for `value` and everything inside it; keys are checked as their own items."""
    stack = [("", 0, value)]
    while stack:
        path, depth, item = stack.pop()
        yield path, depth, item
        if isinstance(item, dict):
            for key, child in item.items():
                if problem := text_problem(key):
                    raise UnsafeValue(_join(path, printable(key)), f"(the name) {problem}")
                stack.append((_join(path, key), depth + 1, child))
        elif isinstance(item, list):
            stack.extend((_join(path, str(index)), depth + 1, child) for index, child in enumerate(item))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is too large")
    return number
