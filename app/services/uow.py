"""The unit of work: the only place that commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.extensions import db
from app.services.errors import Conflict

# PostgreSQL's deadlock, serialization failure and lock timeout: the database gave up on this transaction because
# another one held what it needed. Nothing was written; the caller may simply try again.
_CONTENTION_SQLSTATES = {"40P01", "40001", "55P03"}


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """Commit what the block did, or roll all of it back if it raises: a change and its audit row land together."""
    session = db.session
    try:
        yield session
        session.commit()
    except StaleDataError:
        # A versioned row (e.g. a subscription) was changed by someone else since it was read.
        session.rollback()
        raise Conflict("The record changed while this request ran; reload it and try again.") from None
    except OperationalError as exc:
        session.rollback()
        if is_contention(exc):
            raise Conflict("Another change to the same records ran at the same moment; try again.") from None
        raise
    except BaseException:
        session.rollback()
        raise


def is_contention(exc: OperationalError) -> bool:
    """Whether the database refused the transaction because of a concurrent one (not an outage)."""
    if getattr(exc.orig, "sqlstate", None) in _CONTENTION_SQLSTATES:
        return True
    return "database is locked" in str(exc.orig)  # SQLite, once busy_timeout has run out


def insert_on_conflict(session: Session, model: type) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `model` in the session's dialect, so it takes `on_conflict_do_nothing/update` (both have it)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)
