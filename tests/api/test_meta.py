"""Health, readiness, the OpenAPI document, the docs page and the headers every answer carries."""

import re

import pytest
from openapi_spec_validator import validate

from tests.conftest import build_app


def test_healthz_answers_without_touching_the_database(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_readyz_is_ok_on_a_migrated_database(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "database": "ok", "migrations": "ok"}


def test_readyz_is_503_when_migrations_are_not_applied(test_env, tmp_path):
    app = build_app({**test_env, "TEST_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert (body["status"], body["database"]) == ("unavailable", "ok")
    assert "db upgrade" in body["migrations"]


def test_readyz_is_503_when_the_database_is_unreachable(test_env):
    app = build_app({**test_env, "TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"})
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["database"].startswith("unreachable")
    assert "127.0.0.1" not in resp.get_data(as_text=True)  # no connection details leak


@pytest.fixture
def spec(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    return resp.get_json()


def test_the_openapi_document_is_valid_openapi_3(spec):
    validate(spec)
    assert spec["openapi"].startswith("3.")


def test_the_openapi_document_documents_the_key_and_problem_details(spec):
    assert spec["components"]["securitySchemes"]["AdminKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Admin-Key",
        "description": "An admin key (see `admin-keys create`).",
    }
    assert spec["security"] == [{"AdminKey": []}]
    problem = spec["components"]["schemas"]["Problem"]["properties"]
    assert {"type", "title", "status", "detail", "code", "errors"} <= set(problem)
    forbidden = spec["components"]["responses"]["FORBIDDEN"]["content"]
    assert list(forbidden) == ["application/problem+json"]


def test_every_operation_documents_the_problems_it_can_answer_and_no_catch_all(spec):
    def statuses(path, method="get"):
        return set(spec["paths"][path][method]["responses"])

    assert statuses("/v1/admin/billing/audit") == {"200", "400", "403", "422"}
    assert statuses("/v1/admin/billing/subscriptions/{user_id}") == {"200", "400", "403", "404"}
    assert statuses("/healthz") == {"200"}
    not_found = spec["paths"]["/v1/admin/billing/subscriptions/{user_id}"]["get"]["responses"]["404"]
    assert list(not_found["content"]) == ["application/problem+json"]  # declared with a description only


def test_the_audit_log_documents_both_of_its_200_bodies(spec):
    content = spec["paths"]["/v1/admin/billing/audit"]["get"]["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/AuditPage"}
    assert content["text/csv"]["schema"]["type"] == "string"


def test_a_body_operation_documents_413_415_and_422(probe_app):
    spec = probe_app.test_client().get("/openapi.json").get_json()
    assert {"400", "403", "413", "415", "422"} <= set(
        spec["paths"]["/v1/admin/billing/_probe/change"]["post"]["responses"]
    )


def test_every_route_is_documented_and_public_ones_need_no_key(spec):
    paths = spec["paths"]
    assert {"/v1/admin/billing/audit", "/v1/admin/billing/subscriptions/{user_id}", "/healthz", "/readyz"} <= set(paths)
    assert paths["/healthz"]["get"]["security"] == []
    assert "security" not in paths["/v1/admin/billing/audit"]["get"]  # inherits the global AdminKey
    audit_params = {p["name"] for p in paths["/v1/admin/billing/audit"]["get"]["parameters"]}
    assert {"user_id", "actor", "action", "since", "until", "limit", "cursor", "format"} <= audit_params


def test_the_openapi_document_holds_no_secrets(app, spec, client):
    text = client.get("/openapi.json").get_data(as_text=True)
    assert app.config["SECRET_KEY"] not in text


def test_the_docs_page_loads_only_local_assets(client):
    resp = client.get("/docs")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/") for source in sources)
    assert "<script>" not in html  # no inline script: the CSP forbids it
    for source in sources:
        assert client.get(source).status_code == 200, source


def test_the_root_leads_to_the_console(client):
    resp = client.get("/")
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/"


def test_every_answer_carries_security_headers_and_a_request_id(client):
    resp = client.get("/healthz")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


@pytest.mark.parametrize("incoming, echoed", [("abc-123", True), ("bad id with spaces", False), ("x" * 200, False)])
def test_a_sane_incoming_request_id_is_kept(client, incoming, echoed):
    resp = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert (resp.headers["X-Request-ID"] == incoming) is echoed


def test_admin_answers_are_never_cached(api):
    assert api("viewer").get("/v1/admin/billing/audit").headers["Cache-Control"] == "no-store"
