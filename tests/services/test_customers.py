from datetime import timedelta

import pytest

from app.models import AttemptTrigger, EventAttempt, EventStatus, Role
from app.services import audit, customers
from app.services.actor import Actor, Channel
from app.services.customers import EntryKind
from app.services.errors import NotFound
from app.services.uow import unit_of_work
from tests.factories import BillingEventFactory, CustomerFactory, GracePeriodFactory, SubscriptionFactory

VIEWER = Actor(name="reader", role=Role.VIEWER, channel=Channel.CONSOLE)


@pytest.fixture
def people(tx):
    CustomerFactory(user_id="user-ann", email="Ann.Lee@Example.com", provider_customer_id="cus_AAA1")
    CustomerFactory(user_id="user-anna", email="anna@example.com", provider_customer_id="cus_AAA2")
    CustomerFactory(user_id="user_x", email="x@example.com", provider_customer_id="cus_ZZZ")
    SubscriptionFactory(user_id="user-bob", plan="starter")


def found(query):
    return [match.user_id for match in customers.search_customers(query, actor=VIEWER)]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("user-ann", ["user-ann", "user-anna"]),  # the exact match first, then prefixes
        ("user-an", ["user-ann", "user-anna"]),
        ("ann.lee@example.com", ["user-ann"]),  # email in any case
        ("ANNA@", ["user-anna"]),
        ("cus_AAA2", ["user-anna"]),
        ("cus_AAA", ["user-ann", "user-anna"]),
        ("user_", ["user_x"]),  # `_` is a character here, not a LIKE wildcard
        ("user%", []),
        ("  user-bob  ", ["user-bob"]),
        ("", []),
        ("nobody", []),
    ],
)
def test_search_finds_exact_then_prefix_matches(people, query, expected):
    assert found(query) == expected


def test_a_match_carries_the_subscription_and_says_whether_it_is_exact(people):
    [bob] = customers.search_customers("user-bob", actor=VIEWER)
    assert (bob.plan, bob.status, bob.exact) == ("starter", "active", True)
    assert [m.exact for m in customers.search_customers("user-an", actor=VIEWER)] == [False, False]


def test_the_timeline_merges_every_source_newest_first(tx, frozen_clock):
    start = frozen_clock.now
    SubscriptionFactory(user_id="user-alice")
    failed = BillingEventFactory(
        user_id="user-alice", status=EventStatus.FAILED, last_error="no such price", created_at=start
    )
    tx.add(
        EventAttempt(
            event_pk=failed.id,
            at=start + timedelta(minutes=1),
            trigger=AttemptTrigger.RECEIVE,
            outcome=EventStatus.FAILED,
            error="no such price",
        )
    )
    GracePeriodFactory(user_id="user-alice", starts_at=start + timedelta(minutes=2))
    for minutes, action in ((3, "grace.reset"), (4, "reconcile.apply")):
        with unit_of_work() as session:
            audit.record(
                session, Actor.cli("ops"), action, "user-alice", {"a": 1}, {"a": 2},
                now=start + timedelta(minutes=minutes), reason=f"why {action}",
            )  # fmt: skip
    BillingEventFactory(user_id="user-bob", created_at=start + timedelta(minutes=5))  # someone else's

    page = customers.get_customer_page("user-alice", actor=VIEWER)

    assert [(entry.kind, entry.title) for entry in page.timeline] == [
        (EntryKind.RECONCILE, "reconcile.apply"),
        (EntryKind.ACTION, "grace.reset"),
        (EntryKind.GRACE, "grace period"),
        (EntryKind.ATTEMPT, "receive of invoice.payment_failed"),
        (EntryKind.EVENT, "invoice.payment_failed"),
    ]
    assert page.timeline[1].reason == "why grace.reset" and page.timeline[1].after == {"a": 2}
    assert page.timeline[3].event_id == failed.event_id and page.timeline[4].detail == "no such price"
    assert page.subscription.user_id == "user-alice" and page.subscription.grace_period is not None
    assert page.more is False


def test_the_timeline_stops_at_its_limit_and_says_more_exist(tx, frozen_clock):
    CustomerFactory(user_id="user-busy")
    for minute in range(4):
        BillingEventFactory(user_id="user-busy", created_at=frozen_clock.now + timedelta(minutes=minute))
    page = customers.get_customer_page("user-busy", actor=VIEWER, limit=3)
    assert len(page.timeline) == 3 and page.more is True
    assert page.subscription is None


def test_an_unknown_customer_is_not_found(tx):
    with pytest.raises(NotFound, match="user-ghost"):
        customers.get_customer_page("user-ghost", actor=VIEWER)
