"""Extension objects, created bare and bound to the app in `init_app`.

The flask-smorest Api is made per app in `create_app`: it holds one app's OpenAPI document."""

from __future__ import annotations

import time

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

from app.config import PROJECT_ROOT
from app.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate(directory=str(PROJECT_ROOT / "migrations"), compare_type=True)
csrf = CSRFProtect()
# A pooled PostgreSQL connection idle longer than this is pinged before use (one round trip), see below.
PING_AFTER_IDLE_SECONDS = 1.0


def init_app(app: Flask) -> None:
    """Bind every extension to `app`."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        app.config["INSTANCE_PATH"].mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            ping_idle_connections(db.engine)
    migrate.init_app(app, db, render_as_batch=True)
    csrf.init_app(app)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, _record) -> None:
    """Enforce foreign keys and let readers run beside a writer on SQLite."""
    if type(dbapi_connection).__module__ != "sqlite3":
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection is alive before use when it sat idle, instead of at every checkout.

    `pool_pre_ping` costs a round trip per checkout, and a request checks out once per transaction (an ingest
    twice, a replay once per event): on loaded cores each is a wait for PostgreSQL to be scheduled. A connection
    back in the pool within the last second was working then; one idle longer (e.g. across a server restart) is
    pinged, and a dead one is replaced, as pre-ping does.
    """

    @event.listens_for(engine, "checkin")
    def _note_idle_since(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # just connected, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("the pooled connection is gone; the pool opens a new one") from exc
