"""Readiness: can the database be reached, and is its schema at the migrations' head?"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db


@dataclass(frozen=True)
class Readiness:
    database: str
    migrations: str

    @property
    def ready(self) -> bool:
        return self.database == "ok" and self.migrations == "ok"

    def as_dict(self) -> dict[str, str]:
        return {
            "status": "ok" if self.ready else "unavailable",
            "database": self.database,
            "migrations": self.migrations,
        }


@functools.cache
def _code_heads(migrations_dir: str) -> frozenset[str]:
    return frozenset(ScriptDirectory(migrations_dir).get_heads())


def _applied_revisions(connection) -> frozenset[str]:
    """The revisions recorded in alembic_version (none before the first `db upgrade`)."""
    if not inspect(connection).has_table("alembic_version"):
        return frozenset()
    return frozenset(connection.scalars(text("SELECT version_num FROM alembic_version")))


def readiness(migrations_dir: str) -> Readiness:
    """Check the database connection and compare its Alembic revision with the code's head."""
    try:
        with db.engine.connect() as connection:
            applied = _applied_revisions(connection)
    except SQLAlchemyError as exc:
        return Readiness(f"unreachable: {type(exc).__name__}", "unknown")
    heads = _code_heads(migrations_dir)
    if applied != heads:
        return Readiness(
            "ok",
            f"database at {sorted(applied) or 'no revision'}, code at {sorted(heads)}: "
            "run `flask --app wsgi db upgrade`",
        )
    return Readiness("ok", "ok")
