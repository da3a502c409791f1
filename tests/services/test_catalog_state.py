import pytest

from app import clock
from app.extensions import db
from app.models.plans import CatalogState
from app.services import plans
from app.services.uow import unit_of_work
from tests.concurrency import held, migrated_app, run_first_then_second


def test_a_new_catalog_is_not_stale(tx):
    assert plans.catalog_status(tx).stale is False


def test_a_catalog_event_marks_it_stale_until_the_next_sync(tx, frozen_clock):
    with unit_of_work() as session:
        assert plans.mark_catalog_stale(session, "price.updated evt_1", now=clock.utcnow()) is True
    first = clock.utcnow()
    frozen_clock.advance(minutes=5)
    with unit_of_work() as session:
        assert plans.mark_catalog_stale(session, "product.updated evt_2", now=clock.utcnow()) is False
    status = plans.catalog_status(tx)
    assert (status.stale, status.stale_since, status.stale_reason) == (True, first, "price.updated evt_1")

    with unit_of_work() as session:
        plans.mark_catalog_synced(session, now=clock.utcnow())
    status = plans.catalog_status(tx)
    assert (status.stale, status.synced_at) == (False, clock.utcnow())
    assert tx.query(CatalogState).count() == 1


def test_two_first_catalog_events_at_once_both_mark_it_stale(test_env, own_database, monkeypatch, frozen_clock):
    """The first two catalog events ever race to create the state row: the second waits for the first's row and
    locks it, instead of failing on its primary key (and being retried)."""
    with migrated_app(test_env, own_database) as app:
        if own_database.startswith("sqlite"):
            pytest.skip("SQLite has one writer at a time: the second event waits for the database's write lock")
        there, release = held(monkeypatch, plans, "_state_for_update")  # the first holds the new row, uncommitted
        marked = {}

        def mark(name: str) -> None:
            with app.app_context(), unit_of_work() as session:
                marked[name] = plans.mark_catalog_stale(session, f"price.updated {name}", now=clock.utcnow())
            db.session.remove()

        run_first_then_second(app, lambda: mark("evt_first"), lambda: mark("evt_second"), there, release)

        assert marked == {"evt_first": True, "evt_second": False}
        with app.app_context():
            status = plans.catalog_status(db.session)
            assert (status.stale, status.stale_reason) == (True, "price.updated evt_first")
            db.session.remove()
