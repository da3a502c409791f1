import base64
import json
from datetime import UTC, datetime

import pytest
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_encode
from marshmallow import Schema, ValidationError

from app.schemas.common import Cursor


class EventsCursor(Schema):
    cursor = Cursor(datetime, int, scope="events")


class AuditCursor(Schema):
    cursor = Cursor(int, scope="audit")


class NamesCursor(Schema):
    cursor = Cursor(str, scope="names")


@pytest.fixture(autouse=True)
def app_context(app):
    with app.app_context():
        yield


def signed(payload, scope="audit", secret=None):
    """A cursor signed the way the app signs them (a forger would need the secret)."""
    from flask import current_app

    return URLSafeSerializer(secret or current_app.config["SECRET_KEY"], salt=f"billops.cursor.{scope}").dumps(payload)


def test_a_cursor_round_trips_its_sort_key():
    key = (datetime(2026, 11, 25, 12, 30, tzinfo=UTC), 42)
    token = EventsCursor().dump({"cursor": key})["cursor"]
    assert "2026" not in token and "42" not in token  # opaque
    assert EventsCursor().load({"cursor": token})["cursor"] == key


def _b64(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not-base64!",
        _b64([3]),  # the unsigned cursor of old: forged
        _b64([[[[[[[[[[1]]]]]]]]]]),
        "W" * 100_000,  # far longer than any cursor: refused before anything is decoded
    ],
)
def test_garbage_or_forged_cursors_are_refused(token):
    with pytest.raises(ValidationError, match="Not a cursor"):
        AuditCursor().load({"cursor": token})


def test_a_changed_cursor_is_refused():
    token = AuditCursor().dump({"cursor": (41,)})["cursor"]
    payload, signature = token.split(".")
    forged = _b64([4]) + "." + signature
    with pytest.raises(ValidationError, match="Not a cursor"):
        AuditCursor().load({"cursor": forged})
    with pytest.raises(ValidationError, match="Not a cursor"):
        AuditCursor().load({"cursor": f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"})


def test_another_lists_cursor_is_refused():
    token = AuditCursor().dump({"cursor": (41,)})["cursor"]
    assert AuditCursor().load({"cursor": token})["cursor"] == (41,)
    with pytest.raises(ValidationError, match="Not a cursor"):
        NamesCursor().load({"cursor": token})
    with pytest.raises(ValidationError, match="Not a cursor"):
        EventsCursor().load({"cursor": signed([41], scope="events")})


def test_a_cursor_signed_with_another_secret_is_refused():
    with pytest.raises(ValidationError, match="Not a cursor"):
        AuditCursor().load({"cursor": signed([41], secret="someone else's secret key, long enough")})


@pytest.mark.parametrize(
    "schema, payload",
    [
        (AuditCursor, [2**63]),  # bigint out of range
        (AuditCursor, [-(2**63) - 1]),
        (AuditCursor, [True]),
        (AuditCursor, [[[[[1]]]]]),
        (AuditCursor, []),
        (EventsCursor, ["2026-11-25T12:30:00", 1]),  # naive
        (EventsCursor, ["0001-01-01T00:00:00+01:00", 1]),  # year 0 in UTC
        (EventsCursor, ["9999-12-31T23:59:59-01:00", 1]),  # year 10000 in UTC
        (NamesCursor, ["a\x00b"]),
        (NamesCursor, ["x" * 256]),
    ],
)
def test_a_validly_signed_cursor_with_unbounded_values_is_refused(schema, payload):
    with pytest.raises(ValidationError, match="Not a cursor"):
        schema().load({"cursor": signed(payload, scope=schema._declared_fields["cursor"].scope)})


def test_a_validly_signed_cursor_with_a_lone_surrogate_is_refused():
    from flask import current_app

    serializer = URLSafeSerializer(current_app.config["SECRET_KEY"], salt="billops.cursor.names")
    token = serializer.make_signer().sign(base64_encode(b'["\\ud800"]')).decode()
    with pytest.raises(ValidationError, match="Not a cursor"):
        NamesCursor().load({"cursor": token})


def test_cursor_datetimes_are_returned_in_utc():
    [moment, _] = EventsCursor().load({"cursor": signed(["2026-11-25T13:30:00+01:00", 7], scope="events")})["cursor"]
    assert moment == datetime(2026, 11, 25, 12, 30, tzinfo=UTC) and moment.utcoffset().total_seconds() == 0
