"""The unit of work: the only place that commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.extensions import db
from app.services.errors import Conflict


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
    except BaseException:
        session.rollback()
        raise
