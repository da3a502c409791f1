"""The app's PostgreSQL role from docs/operations.md cannot change the audit log, but the app works as it.

Runs the documented SQL itself, in a database of its own, with a throw-away role dropped afterwards.
"""

import re
import uuid
from pathlib import Path

import flask_migrate
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app import clock, create_app
from app.config import TestConfig
from app.extensions import db
from app.models import AuditEntry
from app.services import audit, keys
from app.services.actor import Actor
from app.services.uow import unit_of_work

OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"


def _documented_sql() -> str:
    [block] = re.findall(r"```sql\n(-- billops app role.*?)```", OPERATIONS.read_text(), re.DOTALL)
    return block


@pytest.fixture
def app_role_url(test_env, own_database):
    """`own_database`, migrated by its owner, with the documented app role; the URL connects as that role."""
    url = make_url(own_database)
    if url.get_backend_name() != "postgresql":
        pytest.skip("database roles are PostgreSQL's")
    with create_app(TestConfig({**test_env, "TEST_DATABASE_URL": own_database})).app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    role = f"billops_app_{uuid.uuid4().hex[:10]}"
    sql = (
        _documented_sql()
        .replace("billops_app", role)
        .replace("DATABASE billops ", f'DATABASE "{url.database}" ')
        .replace("billops_owner", url.username)
    )
    owner = create_engine(url, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        connection.exec_driver_sql(sql)
    try:
        yield url.set(username=role, password=None).render_as_string(hide_password=False)
    finally:
        with owner.connect() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}"'))
            connection.execute(text(f'DROP ROLE "{role}"'))
        owner.dispose()


REFUSED = [
    "UPDATE billing_admin_audit SET reason = 'rewritten'",
    "DELETE FROM billing_admin_audit",
    "TRUNCATE billing_admin_audit",
    "ALTER TABLE billing_admin_audit DISABLE TRIGGER USER",
    "ALTER TABLE billing_admin_audit DISABLE TRIGGER billing_admin_audit_no_change",
]


def test_the_app_role_cannot_change_or_unprotect_the_audit_log_but_the_app_works(test_env, app_role_url):
    app = create_app(TestConfig({**test_env, "TEST_DATABASE_URL": app_role_url}))
    with app.app_context():
        with unit_of_work() as session:
            entry = audit.record(session, Actor.cli("jane"), "grace.reset", "user-bob", None, {}, now=clock.utcnow())
        assert keys.record_auth_failure(Actor.cli("anonymous"), "unknown key", now=clock.utcnow())
        for statement in REFUSED:
            with pytest.raises(DBAPIError, match=r"permission denied|must be owner"), db.engine.begin() as connection:
                connection.execute(text(statement))
        report = audit.verify_chain()
        assert report.ok and report.checked == 2
        assert db.session.get(AuditEntry, entry.id).reason is None
        db.session.remove()
        db.engine.dispose()
