from datetime import UTC, datetime, timedelta

from tests.factories import CustomerFactory, GracePeriodFactory, SubscriptionFactory

URL = "/v1/admin/billing/subscriptions/{}"


def test_a_subscription_shows_its_state_and_active_grace_period(api, frozen_clock):
    SubscriptionFactory(
        user_id="user-bob",
        plan="starter",
        status="past_due",
        credits=120,
        valid_until=datetime(2026, 12, 1, tzinfo=UTC),
        provider_subscription_id="sub_bob",
    )
    GracePeriodFactory(
        user_id="user-bob",
        starts_at=frozen_clock.now,
        ends_at=frozen_clock.now + timedelta(days=7),
        reason="card declined",
    )
    body = api("viewer").get(URL.format("user-bob")).get_json()
    assert body == {
        "user_id": "user-bob",
        "plan": "starter",
        "status": "past_due",
        "credits": 120,
        "valid_until": "2026-12-01T00:00:00+00:00",
        "provider_subscription_id": "sub_bob",
        "version": 1,
        "updated_at": frozen_clock.now.isoformat(),
        "grace_period": {
            "starts_at": "2026-11-25T12:00:00+00:00",
            "ends_at": "2026-12-02T12:00:00+00:00",
            "status": "active",
            "reset_count": 0,
            "reason": "card declined",
        },
    }


def test_a_resolved_grace_period_is_not_shown(api, frozen_clock):
    SubscriptionFactory(user_id="user-carol")
    GracePeriodFactory(user_id="user-carol", status="resolved")
    assert api("viewer").get(URL.format("user-carol")).get_json()["grace_period"] is None


def test_unknown_users_and_users_without_a_subscription_are_not_found(api):
    CustomerFactory(user_id="user-new")
    client = api("viewer")
    for user_id, detail in [("user-nobody", "No customer"), ("user-new", "has no subscription")]:
        resp = client.get(URL.format(user_id))
        assert resp.status_code == 404
        assert resp.get_json()["code"] == "not_found"
        assert detail in resp.get_json()["detail"]
