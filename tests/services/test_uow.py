"""The unit of work: versioned rows refuse a write based on a stale read (no lost update)."""

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import create_app
from app.config import TestConfig
from app.extensions import db
from app.models import Customer, Subscription, SubscriptionStatus
from app.services.errors import Conflict
from app.services.uow import unit_of_work
from tests.factories import SubscriptionFactory


@pytest.fixture
def committing_app(test_env, migrated_database):
    """A production-like app whose commits are real (two connections must see each other), cleaned up after."""
    app = create_app(TestConfig(test_env))
    with app.app_context():
        db.session.add(Customer(user_id="user-race"))
        db.session.add(Subscription(user_id="user-race", status=SubscriptionStatus.ACTIVE, credits=100))
        db.session.commit()
        try:
            yield app
        finally:
            db.session.rollback()
            db.session.execute(delete(Subscription).where(Subscription.user_id == "user-race"))
            db.session.execute(delete(Customer).where(Customer.user_id == "user-race"))
            db.session.commit()


def test_a_write_based_on_a_stale_read_is_a_conflict_not_a_lost_update(committing_app):
    mine = db.session.scalar(select(Subscription).where(Subscription.user_id == "user-race"))  # this request reads

    with Session(db.engine) as other_request:  # another request changes the row and commits meanwhile
        theirs = other_request.scalar(select(Subscription).where(Subscription.user_id == "user-race"))
        theirs.credits += 50
        other_request.commit()

    with pytest.raises(Conflict, match="changed while"), unit_of_work():
        mine.credits = 0

    db.session.expire_all()
    stored = db.session.scalar(select(Subscription).where(Subscription.user_id == "user-race"))
    assert (stored.credits, stored.version) == (150, 2)


def test_every_update_bumps_the_version(tx):
    subscription = SubscriptionFactory(user_id="user-bob", credits=1)
    assert subscription.version == 1
    with unit_of_work():
        subscription.credits = 2
    assert subscription.version == 2


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "driver_error",
    [
        _DriverError("deadlock detected", "40P01"),
        _DriverError("could not serialize access", "40001"),
        _DriverError("canceling statement due to lock timeout", "55P03"),
        _DriverError("database is locked"),  # SQLite once busy_timeout runs out
    ],
)
def test_losing_to_a_concurrent_transaction_is_a_conflict_and_changes_nothing(tx, driver_error):
    with pytest.raises(Conflict, match="try again"), unit_of_work() as session:
        session.add(Customer(user_id="user-contended"))
        session.flush()
        raise OperationalError("UPDATE ...", {}, driver_error)
    assert tx.scalar(select(Customer).where(Customer.user_id == "user-contended")) is None


def test_a_database_outage_is_not_mistaken_for_a_conflict(tx):
    with pytest.raises(OperationalError), unit_of_work():
        raise OperationalError("SELECT 1", {}, _DriverError("server closed the connection", "08006"))
