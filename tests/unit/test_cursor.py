from datetime import UTC, datetime

import pytest
from marshmallow import Schema, ValidationError

from app.schemas.common import Cursor


class EventsCursor(Schema):
    cursor = Cursor(datetime, int)


def test_a_cursor_round_trips_its_sort_key():
    key = (datetime(2026, 11, 25, 12, 30, tzinfo=UTC), 42)
    token = EventsCursor().dump({"cursor": key})["cursor"]
    assert "2026" not in token  # opaque
    assert EventsCursor().load({"cursor": token})["cursor"] == key


@pytest.mark.parametrize(
    "token", ["not-base64!", "W10", "WyJ4IiwgMV0", "WzEsIDJd", "WyIyMDI2LTExLTI1VDEyOjMwOjAwIiwgMV0"]
)
def test_a_forged_or_foreign_cursor_is_refused(token):
    # garbage, [], ["x", 1], [1, 2], and a naive timestamp
    with pytest.raises(ValidationError, match="Not a cursor"):
        EventsCursor().load({"cursor": token})
