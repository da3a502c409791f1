"""The error contract: every class of failure answers RFC 9457 problem+json with the right status and code."""

import pytest
from sqlalchemy import func, select

from app.models import AuditEntry, Customer

PROBE = "/v1/admin/billing/_probe/change"


@pytest.fixture
def app(probe_app):
    return probe_app


def assert_problem(resp, status, code):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["status"] == status and body["code"] == code
    assert body["type"] == f"urn:billops:problem:{code}"
    assert body["title"] and body["detail"]
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


def test_a_valid_request_passes_through(api):
    assert api("admin").post(PROBE, json={"user_id": "user-alice", "credits": 5}).get_json() == {"ok": True}


@pytest.mark.parametrize(
    "body, content_type",
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"text"', "application/json"),
        ("", "application/json"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_invalid_json(api, body, content_type):
    assert_problem(api().post(PROBE, data=body, content_type=content_type), 400, "invalid_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_unsupported_media_type(api, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    assert_problem(api().post(PROBE, data='{"user_id": "u", "credits": 1}', **kwargs), 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "payload, fields",
    [
        ({"user_id": "user-alice"}, {"credits"}),
        ({"user_id": "user-alice", "credits": "5"}, {"credits"}),
        ({"user_id": "user-alice", "credits": -1}, {"credits"}),
        ({"credits": 1, "surprise": True}, {"user_id", "surprise"}),
    ],
)
def test_bad_body_fields_are_validation_failed_naming_each_field(api, payload, fields):
    body = assert_problem(api().post(PROBE, json=payload), 422, "validation_failed")
    assert set(body["errors"]) == fields
    assert all(isinstance(messages, list) and messages for messages in body["errors"].values())


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=ten"])
def test_bad_query_parameters_are_invalid_parameters(api, query):
    body = assert_problem(api().get(f"{PROBE}?{query}"), 400, "invalid_parameters")
    assert set(body["errors"]) == {"limit"}


def test_an_oversized_body_is_payload_too_large(api):
    big = '{"user_id": "' + "x" * (1024 * 1024) + '", "credits": 1}'
    assert_problem(api().post(PROBE, data=big, content_type="application/json"), 413, "payload_too_large")


@pytest.mark.parametrize(
    "user_id, status, code",
    [("rule", 422, "rule_violation"), ("taken", 409, "conflict"), ("ghost", 404, "not_found")],
)
def test_domain_errors_map_to_their_status(api, user_id, status, code):
    assert_problem(api().post(PROBE, json={"user_id": user_id, "credits": 1}), status, code)


@pytest.mark.parametrize("role, status", [("viewer", 403), ("support", 403), ("admin", 200)])
def test_a_role_without_the_permission_is_forbidden(api, role, status):
    resp = api(role).post(PROBE, json={"user_id": "user-alice", "credits": 1})
    assert resp.status_code == status
    if status == 403:
        assert_problem(resp, 403, "forbidden")


def test_an_unexpected_error_is_a_500_problem_that_hides_internals_and_keeps_nothing(api, tx, caplog):
    admin = api()
    audits = tx.scalar(select(func.count()).select_from(AuditEntry))
    resp = admin.post(PROBE, json={"user_id": "boom", "credits": 1}, headers={"X-Request-ID": "trace-me-42"})
    body = assert_problem(resp, 500, "internal_error")
    assert "secret internals" not in resp.get_data(as_text=True)
    assert "X-Request-ID" in body["detail"]
    assert resp.headers["X-Request-ID"] == "trace-me-42"
    assert tx.scalar(select(Customer).where(Customer.user_id == "user-half-written")) is None
    assert tx.scalar(select(func.count()).select_from(AuditEntry)) == audits
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.request_id == "trace-me-42" and "ZeroDivisionError" in caplog.text


def test_authentication_comes_before_body_checks(client):
    assert_problem(client.post(PROBE, data="{not json", content_type="application/json"), 403, "auth_required")


def test_unknown_api_routes_and_methods_are_problems(api):
    assert_problem(api().get("/v1/admin/billing/nothing-here"), 404, "not_found")
    resp = api().open("DELETE", "/v1/admin/billing/audit")
    assert_problem(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]


def test_outside_the_api_errors_are_html_pages(client):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"
    assert "Not found" in resp.get_data(as_text=True)
    resp = client.post("/healthz")
    assert (resp.status_code, resp.mimetype) == (405, "text/html")
    assert "GET" in resp.headers["Allow"]
