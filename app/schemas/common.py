"""Fields and shapes shared by every operation: timestamps, cursors, pages."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from app.services.pagination import DEFAULT_LIMIT, MAX_LIMIT


class Timestamp(fields.AwareDateTime):
    """ISO 8601 with an offset, on the way in and out (UTC on the way out)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", **kwargs)


def encode_cursor(key: tuple[Any, ...]) -> str:
    """The opaque `cursor` for a page that starts after the sort key `key` (what `Cursor` reads back)."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


class Cursor(fields.String):
    """An opaque keyset cursor: the sort key of the last item seen, base64url-encoded JSON."""

    def __init__(self, *types: type, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {"description": "`next_cursor` of the previous page"})
        super().__init__(**kwargs)
        self.types = types

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else encode_cursor(value)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[Any, ...]:
        token = super()._deserialize(value, attr, data, **kwargs)
        try:
            plain = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if not isinstance(plain, list) or len(plain) != len(self.types):
                raise ValueError
            return tuple(self._parse(kind, item) for kind, item in zip(self.types, plain, strict=True))
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise ValidationError("Not a cursor from this list; pass `next_cursor` as it was returned.") from None

    @staticmethod
    def _parse(kind: type, item: Any) -> Any:
        if kind is datetime:
            parsed = datetime.fromisoformat(item)
            if parsed.tzinfo is None:
                raise ValueError
            return parsed
        if type(item) is not kind:
            raise TypeError
        return item


class ListQuery(Schema):
    """`limit` and `cursor`, common to every list."""

    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))


def page_schema(name: str, item: type[Schema], *cursor_types: type) -> type[Schema]:
    """The list shape `{"items": [...], "total": N, "next_cursor": "..." | null}`, fields in that order."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "total": fields.Integer(required=True),
            "next_cursor": Cursor(
                *cursor_types,
                allow_none=True,
                metadata={"description": "pass as `cursor` for the next page; null on the last page"},
            ),
        },
        name=name,
    )
