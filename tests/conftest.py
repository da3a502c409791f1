"""Fixtures: one app and one migrated database per run; each test inside a transaction that is rolled back."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import flask_migrate
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import scoped_session, sessionmaker

from app import clock, create_app
from app.config import TestConfig, database_uri
from app.extensions import csrf, db
from app.models.keys import Role
from app.services import keys
from app.services.actor import Actor, Channel
from tests import factories
from tests.fake_stripe import fake_stripe  # noqa: F401  (a fixture for every test)


@pytest.fixture(scope="session")
def test_env(tmp_path_factory) -> dict[str, str]:
    """The environment test apps are built from: TEST_DATABASE_URL, else a throw-away SQLite file."""
    env = dict(os.environ)
    if not env.get("TEST_DATABASE_URL"):
        env["TEST_DATABASE_URL"] = f"sqlite:///{tmp_path_factory.mktemp('db') / 'billops-test.db'}"
    env["BILLOPS_INSTANCE_PATH"] = str(tmp_path_factory.mktemp("instance"))
    return env


@pytest.fixture(scope="session")
def migrated_database(test_env) -> str:
    """Build the schema by running every migration down to base and back up to head (so they are tested)."""
    app = create_app(TestConfig(test_env))
    with app.app_context():
        flask_migrate.downgrade(revision="base")
        flask_migrate.upgrade()
        db.engine.dispose()
    return test_env["TEST_DATABASE_URL"]


def build_app(test_env: dict[str, str], **overrides):
    """A test app on the migrated database; SQLite gets working SAVEPOINTs."""
    app = create_app(TestConfig(test_env, **overrides))
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _enable_sqlite_savepoints(db.engine)
    return app


@contextmanager
def fresh_database(test_env: dict[str, str], directory: Path, name: str) -> Iterator[str]:
    """The URL of a new, empty database beside the suite's (a SQLite file, or a PostgreSQL database dropped after).

    For tests that need real commits: PostgreSQL refuses to delete audit rows, so they cannot be cleaned up.
    """
    url = make_url(database_uri(test_env["TEST_DATABASE_URL"], directory))
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{directory / f'{name}.db'}"
        return
    database = f"billops_{name}_{uuid.uuid4().hex[:12]}"
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield url.set(database=database).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture
def own_database(test_env, tmp_path):
    """The URL of a new, empty database on the same server as the suite's, dropped afterwards."""
    with fresh_database(test_env, tmp_path, "own") as url:
        yield url


@pytest.fixture(scope="session")
def app(test_env, migrated_database):
    return build_app(test_env)


def _enable_sqlite_savepoints(engine) -> None:
    """SQLAlchemy's pysqlite recipe: let SQLAlchemy, not the driver, emit BEGIN, so SAVEPOINTs work."""

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")


@pytest.fixture
def tx(app):
    """A session joined to an outer transaction that is rolled back after the test; commits become savepoints."""
    with app.app_context():
        connection = db.engine.connect()
        outer = connection.begin()
        real_session = db.session
        db.session = scoped_session(sessionmaker(bind=connection, join_transaction_mode="create_savepoint"))
        try:
            yield db.session
        finally:
            db.session.remove()
            db.session = real_session
            outer.rollback()
            connection.close()


@pytest.fixture
def tamper(tx):
    """`with tamper() as session:` edits the audit table as its owner can: on PostgreSQL by disabling the
    append-only triggers first (inside the test's transaction, so they are back for the next test)."""
    on_postgresql = tx.get_bind().dialect.name == "postgresql"

    @contextmanager
    def owner_edits():
        if on_postgresql:
            tx.execute(text("ALTER TABLE billing_admin_audit DISABLE TRIGGER USER"))
        yield tx
        tx.flush()
        if on_postgresql:
            tx.execute(text("ALTER TABLE billing_admin_audit ENABLE TRIGGER USER"))
        tx.expire_all()

    return owner_edits


@pytest.fixture
def statements(tx):
    """`with statements() as seen:` collects (SQL, parameters) of every statement run inside the block."""

    @contextmanager
    def collecting():
        seen: list[tuple[str, object]] = []

        def note(_conn, _cursor, statement, parameters, *_args):
            seen.append((statement, parameters))

        event.listen(db.engine, "before_cursor_execute", note)
        try:
            yield seen
        finally:
            event.remove(db.engine, "before_cursor_execute", note)

    return collecting


@pytest.fixture
def postgres_only(tx):
    if tx.get_bind().dialect.name != "postgresql":
        pytest.skip("the append-only trigger exists on PostgreSQL only")


@pytest.fixture
def client(app, tx):
    return app.test_client()


@pytest.fixture
def runner(app, tx):
    return app.test_cli_runner()


class FrozenClock:
    """A clock that stands still until the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def frozen_clock(monkeypatch):
    """Freeze `app.clock.utcnow` at a fixed instant; `frozen_clock.advance(minutes=5)` moves it."""
    frozen = FrozenClock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    monkeypatch.setattr(clock, "utcnow", frozen)
    return frozen


# Where service-level authentication attempts come from, as the web layer would say.
ORIGIN = Actor(name="anonymous", role=Role.VIEWER, channel=Channel.API, ip="192.0.2.10", request_id="req-test")


@pytest.fixture
def cli_actor():
    return Actor.cli("test-operator")


@pytest.fixture
def make_key(tx, cli_actor):
    """Create an admin key with `role`; returns the secret."""

    def make(role: Role | str = Role.ADMIN, name: str | None = None) -> str:
        name = name or f"{role}-{factories.unique_suffix()}"
        return keys.create_key(name, role, actor=cli_actor, now=clock.utcnow()).secret

    return make


class ApiClient:
    """The test client, sending an X-Admin-Key on every request."""

    def __init__(self, client, secret: str | None) -> None:
        self.client = client
        self.headers = {"X-Admin-Key": secret} if secret else {}

    def open(self, method: str, path: str, **kwargs):
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs):
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.open("POST", path, **kwargs)


@pytest.fixture
def api(client, make_key):
    """`api("support")`: a client authenticated with a new key of that role."""

    def for_role(role: Role | str = Role.ADMIN) -> ApiClient:
        return ApiClient(client, make_key(role))

    return for_role


@pytest.fixture(scope="module")
def probe_app(test_env, migrated_database):
    """An app with the test-only probe blueprint registered (see tests/api/probe.py)."""
    from tests.api import probe

    app = build_app(test_env)
    app.extensions["flask-smorest"]["apis"][""]["ext_obj"].register_blueprint(probe.bp)
    csrf.exempt(probe.bp)  # as create_app exempts the real API blueprint
    return app


@pytest.fixture
def webhook_app(app, monkeypatch):
    """The suite's app with WEBHOOK_SECRET set to the test secrets (see tests/webhooks.py)."""
    from tests.webhooks import OTHER_SECRET, SECRET

    monkeypatch.setitem(app.config, "WEBHOOK_SECRETS", [SECRET, OTHER_SECRET])
    return app
