from app import clock
from app.models.plans import CatalogState
from app.services import plans
from app.services.uow import unit_of_work


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
