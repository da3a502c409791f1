"""Input the database cannot store or compare is a 4xx naming where it is, never a 500, on both databases."""

import json

import pytest
from flask import current_app, request
from itsdangerous import URLSafeSerializer

from tests.api.test_errors import assert_problem

AUDIT = "/v1/admin/billing/audit"
SUBSCRIPTION = "/v1/admin/billing/subscriptions"
PROBE = "/v1/admin/billing/_probe/change"


@pytest.mark.parametrize("path", [f"{SUBSCRIPTION}/%00", f"{SUBSCRIPTION}/user%00alice", "/v1/nothing%00here"])
def test_a_nul_in_the_path_is_invalid_parameters(api, path):
    body = assert_problem(api("viewer").get(path), 400, "invalid_parameters")
    assert "path" in body["errors"]


@pytest.mark.parametrize("field", ["user_id", "actor", "action", "cursor", "since", "format"])
def test_a_nul_in_a_query_value_names_the_parameter(api, field):
    body = assert_problem(api("viewer").get(AUDIT, query_string={field: "a\x00b"}), 400, "invalid_parameters")
    assert body["errors"] == {field: ["contains a NUL character"]}


def test_a_nul_in_a_query_name_is_refused(api):
    body = assert_problem(api("viewer").get(f"{AUDIT}?us%00er=1"), 400, "invalid_parameters")
    assert list(body["errors"]) == ["us\ufffder"]


def test_a_nul_in_a_header_is_refused_once_the_key_is_good(api):
    body = assert_problem(api("viewer").get(AUDIT, headers={"User-Agent": "curl\x00"}), 400, "invalid_parameters")
    assert list(body["errors"]) == ["header User-Agent"]


def test_without_a_key_a_nul_in_a_header_still_answers_auth_required(client):
    """Authentication comes first on the admin API: a NUL does not hide the 403 (nor turn it into a 500)."""
    assert_problem(client.get(AUDIT, headers={"User-Agent": "curl\x00"}), 403, "auth_required")
    assert_problem(client.get(f"{SUBSCRIPTION}/%00"), 403, "auth_required")


@pytest.mark.parametrize(
    "query, field",
    [
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "until"),
        ({"since": "0001-01-01T00:00:00+01:00", "format": "csv"}, "since"),
    ],
)
def test_timestamps_at_the_edge_of_the_calendar_are_invalid_parameters(api, query, field):
    body = assert_problem(api("viewer").get(AUDIT, query_string=query), 400, "invalid_parameters")
    assert list(body["errors"]) == [field]


def test_timestamps_just_inside_the_calendar_are_accepted(api):
    query = {"since": "0001-01-01T00:00:00-01:00", "until": "9999-12-31T23:59:59+01:00"}
    assert api("viewer").get(AUDIT, query_string=query).status_code == 200


def _signed(payload, scope="audit"):
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=f"billops.cursor.{scope}").dumps(payload)


@pytest.mark.parametrize(
    "make_cursor",
    [
        lambda: "WzNd",  # [3], base64url: the unsigned cursor of old, now a forgery
        lambda: "W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW10",  # deeply nested, unsigned
        lambda: _signed([2**63]),  # out of bigint range, though signed with the app's own key
        lambda: _signed([1], scope="events"),  # a real cursor of another list
    ],
    ids=["forged", "nested", "2^63", "other-list"],
)
def test_bad_cursors_are_invalid_parameters_for_pages_and_csv(api, app, make_cursor):
    client = api("viewer")
    with app.app_context():
        cursor = make_cursor()
    for query in ({"cursor": cursor}, {"cursor": cursor, "format": "csv"}):
        body = assert_problem(client.get(AUDIT, query_string=query), 400, "invalid_parameters")
        assert list(body["errors"]) == ["cursor"]


class TestBodies:
    @pytest.fixture
    def app(self, probe_app):
        return probe_app

    @pytest.mark.parametrize(
        "payload, field",
        [
            ({"user_id": "a\x00b", "credits": 1}, "user_id"),
            ({"user_id": "\ud800", "credits": 1}, "user_id"),
            ({"user_id": "u", "credits": 1, "meta": {"list": ["ok", "x\x00"]}}, "meta.list.1"),
            ({"user_id": "u", "credits": 1, "meta": {"bad\x00key": 1}}, "meta.bad\ufffdkey"),
            ({"user_id": "u", "credits": 2**63}, "credits"),
        ],
    )
    def test_unstorable_body_values_are_validation_failed_naming_the_field(self, api, payload, field):
        raw = json.dumps(payload)  # \u0000 and \ud800 escapes, as a client would send them
        body = assert_problem(api().post(PROBE, data=raw, content_type="application/json"), 422, "validation_failed")
        assert list(body["errors"]) == [field]

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"user_id": "\xff\xfe", "credits": 1}',  # not UTF-8
            b'{"user_id": "u", "credits": NaN}',
            b'{"user_id": "u", "credits": Infinity}',
            b'{"user_id": "u", "credits": -Infinity}',
            b'{"user_id": "u", "credits": 1e400}',
            b'{"user_id": "u", "credits": ' + b"9" * 5000 + b"}",
            b'{"user_id": "u", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b'{"user_id": "u", "x": ' + b"[" * 40 + b"]" * 40 + b"}",
        ],
        ids=["not-utf8", "nan", "infinity", "-infinity", "huge-float", "5000-digits", "deep-100000", "deep-40"],
    )
    def test_unreadable_json_is_invalid_json(self, api, raw):
        assert_problem(api().post(PROBE, data=raw, content_type="application/json"), 400, "invalid_json")

    def test_get_json_is_strict_everywhere(self, app):
        with app.test_request_context(method="POST", data=b'{"a": NaN}', content_type="application/json"):
            assert request.get_json(silent=True) is None
