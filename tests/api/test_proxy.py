"""Behind TRUSTED_PROXY_COUNT proxies, the audit log records the client's address, not the proxy's."""

import pytest
from sqlalchemy import select

from app.models import AuditEntry
from tests.conftest import build_app


@pytest.fixture(scope="module")
def app(test_env, migrated_database):
    return build_app(test_env, TRUSTED_PROXY_COUNT=1)


def test_the_forwarded_client_address_is_audited(client, tx):
    client.get("/v1/admin/billing/audit", headers={"X-Forwarded-For": "203.0.113.9"})
    assert tx.scalar(select(AuditEntry.context).where(AuditEntry.action == "auth.failed"))["ip"] == "203.0.113.9"
