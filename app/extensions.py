"""Extension objects, created bare and bound to the app in `init_app`.

The flask-smorest Api is made per app in `create_app`: it holds one app's OpenAPI document."""

from __future__ import annotations

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.config import PROJECT_ROOT
from app.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate(directory=str(PROJECT_ROOT / "migrations"), compare_type=True)
csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    """Bind every extension to `app`."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        app.config["INSTANCE_PATH"].mkdir(parents=True, exist_ok=True)
    db.init_app(app)
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
