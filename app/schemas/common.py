"""Fields and shapes shared by every operation: timestamps, cursors, pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app
from itsdangerous import BadData, URLSafeSerializer
from marshmallow import Schema, ValidationError, fields, validate

from app.services.errors import InvalidInput
from app.services.inputs import INT64_MAX, INT64_MIN, check_text, text_problem
from app.services.pagination import DEFAULT_LIMIT, EXACT_TOTAL_LIMIT, MAX_LIMIT

# Longer than any cursor this app signs; a longer one is refused before its signature is even checked.
MAX_CURSOR_LENGTH = 512
MAX_CURSOR_TEXT = 255
REASON = validate.Length(max=500)


class JSONBoolean(fields.Boolean):
    """JSON's `true` or `false` only. marshmallow's Boolean also takes "yes", "off", 1 and the like; a switch such
    as `dry_run` or `apply` decides whether data changes, so anything but a boolean is refused (422)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class FullMatch(validate.Regexp):
    """A pattern the WHOLE value must match: `re.match` with `$` would let a trailing newline through.

    Write the pattern as `^...$` so the OpenAPI document carries a valid ECMA regex too."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


def storable(value: str) -> None:
    """A field validator for text that comes from elsewhere than a request (files, providers): the input rule."""
    if problem := text_problem(value):
        raise ValidationError(f"The value {problem}.")


class Timestamp(fields.AwareDateTime):
    """ISO 8601 with an offset on the way in, converted to UTC (and UTC on the way out)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 once in UTC
            raise ValidationError("Must be between 0001-01-01 and 9999-12-31 once converted to UTC.") from None


def encode_cursor(key: tuple[Any, ...], *, scope: str) -> str:
    """The opaque, signed `cursor` of list `scope` for the page after the sort key `key` (what `Cursor` reads)."""
    return _serializer(scope).dumps([v.isoformat() if isinstance(v, datetime) else v for v in key])


def _serializer(scope: str) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=f"billops.cursor.{scope}")


class Cursor(fields.String):
    """An opaque keyset cursor: the sort key of the last item seen, signed for one list.

    `Cursor(datetime, int, scope="events")`: the key's types, and the list the cursor belongs to. The token is
    signed with SECRET_KEY (itsdangerous), salted with the scope, so a changed, forged or other list's cursor is
    refused; the values inside are bounded (64-bit ints, UTC datetimes, short storable text) before any query.
    """

    def __init__(self, *types: type, scope: str, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {"description": "`next_cursor` of the previous page"})
        super().__init__(**kwargs)
        self.types = types
        self.scope = scope

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else encode_cursor(value, scope=self.scope)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[Any, ...]:
        token = super()._deserialize(value, attr, data, **kwargs)
        try:
            if len(token) > MAX_CURSOR_LENGTH:
                raise ValueError
            plain = _serializer(self.scope).loads(token)
            if not isinstance(plain, list) or len(plain) != len(self.types):
                raise ValueError
            return tuple(_cursor_value(kind, item) for kind, item in zip(self.types, plain, strict=True))
        except (BadData, ValueError, TypeError, OverflowError, InvalidInput):
            raise ValidationError("Not a cursor from this list; pass `next_cursor` as it was returned.") from None


def _cursor_value(kind: type, item: Any) -> Any:
    """One value of a verified cursor, checked once more so nothing unbounded reaches SQL."""
    if type(item) is not (str if kind is datetime else kind):
        raise TypeError
    if kind is int and not INT64_MIN <= item <= INT64_MAX:
        raise ValueError
    if kind is str:
        return check_text("cursor", item, max_length=MAX_CURSOR_TEXT)
    if kind is datetime:
        parsed = datetime.fromisoformat(check_text("cursor", item, max_length=64))
        if parsed.tzinfo is None:
            raise ValueError
        return parsed.astimezone(UTC)
    return item


class ListQuery(Schema):
    """`limit` and `cursor`, common to every list."""

    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))


def page_schema(name: str, item: type[Schema], *cursor_types: type, scope: str) -> type[Schema]:
    """The list shape `{"items": [...], "total": N, "total_is_estimate": bool, "next_cursor": "..." | null}`.

    `cursor_types` and `scope` are those of the list query's `Cursor`.
    """
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "total": fields.Integer(required=True),
            "total_is_estimate": fields.Boolean(
                required=True,
                metadata={
                    "description": f"true when more than {EXACT_TOTAL_LIMIT:,} rows match: `total` is then "
                    "PostgreSQL's row estimate, not a count"
                },
            ),
            "next_cursor": Cursor(
                *cursor_types,
                scope=scope,
                allow_none=True,
                metadata={"description": "pass as `cursor` for the next page; null on the last page"},
            ),
        },
        name=name,
    )


class ReasonIn(Schema):
    """`reason`: why a change is made, kept in its audit row (optional in the API; the console requires it)."""

    reason = fields.String(validate=REASON, metadata={"description": "why; kept in the audit log"})
