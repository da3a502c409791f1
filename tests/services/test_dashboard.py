from datetime import timedelta

from app.models import EventStatus, GraceStatus
from app.services import audit, dashboard
from app.services.actor import Actor
from app.services.uow import unit_of_work
from tests.factories import BillingEventFactory, GracePeriodFactory
from tests.services.test_customers import VIEWER


def test_the_dashboard_counts_what_needs_a_person(tx, frozen_clock):
    now = frozen_clock.now
    BillingEventFactory.create_batch(2, status=EventStatus.FAILED)
    BillingEventFactory(status=EventStatus.DEAD)
    BillingEventFactory(status=EventStatus.PROCESSED)
    BillingEventFactory(event_id="evt_newer", status=EventStatus.RECEIVED, received_at=now)
    BillingEventFactory(event_id="evt_older", status=EventStatus.RECEIVED, received_at=now - timedelta(minutes=5))
    GracePeriodFactory(user_id="user-late", ends_at=now + timedelta(days=9))
    GracePeriodFactory(user_id="user-soon", ends_at=now + timedelta(days=1))
    GracePeriodFactory(user_id="user-done", status=GraceStatus.RESOLVED)
    for action in ("grace.reset", "console.login", "auth.failed", "entitlements.override"):
        with unit_of_work() as session:
            audit.record(session, Actor.cli("ops"), action, None, None, None, now=now)

    board = dashboard.get_dashboard(actor=VIEWER)

    assert (board.failed_events, board.dead_events) == (2, 1)
    assert board.oldest_unprocessed.event_id == "evt_older"
    assert board.active_grace_periods == 2
    assert [grace.user_id for grace in board.grace_ending_soonest] == ["user-soon", "user-late"]
    assert [entry.action for entry in board.recent_actions] == ["entitlements.override", "grace.reset"]


def test_a_quiet_dashboard_has_nothing_waiting(tx):
    board = dashboard.get_dashboard(actor=VIEWER)
    assert (board.failed_events, board.dead_events, board.oldest_unprocessed) == (0, 0, None)
