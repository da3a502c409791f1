"""The events pages: filters and keyset pages like the API, the detail, and replay (one at once, a set confirmed)."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from app.models import AuditEntry, BillingEvent, EventAttempt, EventStatus
from app.models.events import AttemptTrigger
from tests.console.conftest import LOGIN
from tests.factories import BillingEventFactory

EVENTS = "/admin/events"
REPLAY = "/admin/events/replay"
XSS = '<script>alert("x")</script>'


@pytest.fixture
def stored(tx, frozen_clock):
    """Five events a minute apart (provider time): three failed invoices for user-bob, two processed for ann."""
    made = {}
    for i, (status, user) in enumerate(
        [("failed", "user-bob"), ("processed", "user-ann")] * 2 + [("failed", "user-bob")]
    ):
        event_id = f"evt_{i}"
        made[event_id] = BillingEventFactory(
            event_id=event_id,
            type="customer.updated",
            user_id=user,
            status=EventStatus(status),
            created_at=frozen_clock.now - timedelta(minutes=10 - i),
            last_error="no customer yet" if status == "failed" else None,
        )
    return made


def html(resp, status=200) -> str:
    assert resp.status_code == status, resp.status_code
    return resp.get_data(as_text=True)


def listed(page: str) -> list[str]:
    return re.findall(r'<td><a href="/admin/events/(evt_\d)">', page)


def reasons(tx) -> list[str]:
    return list(tx.scalars(select(AuditEntry.reason).where(AuditEntry.action == "webhook.replay")))


def replays(tx) -> int:
    return tx.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "webhook.replay"))


def test_the_list_filters_like_the_api_with_status_badges(console_as, stored):
    page = html(console_as("viewer").get(f"{EVENTS}?status=failed&user_id=user-bob"))
    assert "3 events match, newest first." in page
    assert listed(page) == ["evt_4", "evt_2", "evt_0"]
    assert '<span class="badge badge-failed">failed</span>' in page and "no customer yet" in page


def test_the_list_pages_with_a_signed_cursor_keeping_the_filters(console_as, stored):
    viewer, seen, url = console_as("viewer"), [], f"{EVENTS}?type=customer.updated&limit=2"
    while url:
        page = html(viewer.get(url))
        seen += listed(page)
        next_link = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = next_link and next_link.group(1).replace("&amp;", "&")
    assert seen == ["evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]


@pytest.mark.parametrize(
    "query, message",
    [
        ("status=lost", "Must be one of: received, processed, failed, ignored, dead."),
        ("since=yesterday", "Enter a date and time in UTC, e.g. 2027-01-31 00:00."),
        ("limit=201", "Must be greater than or equal to 1 and less than or equal to 200."),
        ("cursor=forged", "cursor: Not a cursor from this list"),
    ],
)
def test_bad_filters_show_the_error_and_list_nothing(console_as, stored, query, message):
    page = html(console_as("viewer").get(f"{EVENTS}?{query}"), 400)
    assert message in page and listed(page) == []


def test_only_an_admin_gets_the_replay_buttons(console_as, stored):
    for role in ("viewer", "support"):
        browser = console_as(role)
        assert REPLAY not in html(browser.get(f"{EVENTS}?status=failed"))
        assert REPLAY not in html(browser.get(f"{EVENTS}/evt_0"))
    admin = console_as("admin")
    assert REPLAY not in html(admin.get(EVENTS))  # no filter: nothing to replay as a set
    assert REPLAY in html(admin.get(f"{EVENTS}?status=failed")) and REPLAY in html(admin.get(f"{EVENTS}/evt_0"))


def test_the_detail_shows_the_payload_as_text_the_attempts_and_why_it_was_ignored(console_as, tx, frozen_clock):
    event = BillingEventFactory(
        event_id="evt_late",
        status=EventStatus.IGNORED,
        payload={"id": "evt_late", "note": XSS},
        next_retry_at=frozen_clock.now + timedelta(minutes=5),
    )
    stale = "stale: event created 2026-11-25T09:00:00+00:00 is older than the last applied event"
    tx.add(EventAttempt(event_pk=event.id, at=frozen_clock.now, trigger=AttemptTrigger.RECEIVE,
                        outcome=EventStatus.IGNORED, error=stale, duration_ms=12))  # fmt: skip
    tx.commit()
    page = html(console_as("viewer").get(f"{EVENTS}/evt_late"))
    assert "<script>alert" not in page and "&#34;note&#34;: &#34;&lt;script&gt;alert" in page
    assert stale in page and "12 ms" in page and "receive" in page
    assert "(in 5 min)" in page  # the next retry
    assert "Replaying is for admins" in page


def test_an_unknown_event_is_a_404_page(console_as, tx):
    resp = console_as("viewer").get(f"{EVENTS}/evt_ghost")
    assert resp.status_code == 404 and "No event has the id" in resp.get_data(as_text=True)


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_replay_is_for_admins_only(console_as, tx, stored, role):
    resp = console_as(role).submit(REPLAY, {"event_id": "evt_0"}, form_page="/admin/")
    assert resp.status_code == 403 and replays(tx) == 0


def test_replay_without_csrf_is_refused(console_as, tx, stored):
    assert console_as("admin").submit(REPLAY, {"event_id": "evt_0"}, csrf=False).status_code == 400
    assert replays(tx) == 0


def test_replaying_one_event_runs_at_once_and_returns_to_it(console_as, tx, stored):
    admin = console_as("admin")
    resp = admin.submit(REPLAY, {"event_id": "evt_0", "reason": "bug 88 fixed"}, form_page=f"{EVENTS}/evt_0")
    assert resp.status_code == 302 and resp.headers["Location"] == f"{EVENTS}/evt_0"
    page = html(admin.get(f"{EVENTS}/evt_0"))
    assert "Replayed 1 event: evt_0 " in page
    assert replays(tx) == 1 and reasons(tx) == ["bug 88 fixed"]
    triggers = tx.scalars(select(EventAttempt.trigger).join(BillingEvent).where(BillingEvent.event_id == "evt_0"))
    assert list(triggers) == [AttemptTrigger.REPLAY]


def test_replaying_one_event_without_a_reason_is_an_inline_error_on_its_page(console_as, tx, stored):
    admin = console_as("admin")
    page = html(admin.submit(REPLAY, {"event_id": "evt_0", "reason": "  "}, form_page=f"{EVENTS}/evt_0"))
    assert re.search(r'id="reason-error" class="field-error">Say why', page) and "<code>evt_0</code>" in page
    assert replays(tx) == 0


def test_replaying_a_filtered_set_asks_first_then_runs_what_it_listed(console_as, tx, stored):
    admin = console_as("admin")
    resp = admin.submit(REPLAY, {"status": "failed", "user_id": "user-bob"}, form_page=f"{EVENTS}?status=failed")
    page = html(resp)
    assert "Replay 3 events" in page and "Nothing has changed yet" in page
    assert page.index("replay evt_0 (now failed)") < page.index("replay evt_4 (now failed)")  # oldest first
    assert replays(tx) == 0

    carried = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    assert [value for name, value in carried if name == "event_ids"] == ["evt_0", "evt_2", "evt_4"]
    BillingEventFactory(event_id="evt_late", status=EventStatus.FAILED, user_id="user-bob", type="customer.updated")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    no_reason = admin.client.post(REPLAY, data=MultiDict([*carried, ("csrf_token", token)]))
    assert "Replay 3 events" in html(no_reason) and 'id="reason-error"' in html(no_reason)
    assert replays(tx) == 0  # asked again, nothing run
    resp = admin.client.post(REPLAY, data=MultiDict([*carried, ("csrf_token", token), ("reason", "retry after fix")]))
    assert resp.status_code == 302 and resp.headers["Location"] == f"{EVENTS}?status=failed&user_id=user-bob"
    assert "Replayed 3 events: evt_0" in html(admin.get(resp.headers["Location"]))
    assert replays(tx) == 3  # the three it listed, not the one that arrived meanwhile
    assert reasons(tx) == ["retry after fix"] * 3


@pytest.mark.parametrize(
    "form, message",
    [
        ({}, "give exactly one of event_id, event_ids, or a filter"),
        ({"status": "dead"}, "No event matches these filters; nothing was replayed."),
        ({"since": "soon"}, "Enter a date and time in UTC, e.g. 2027-01-31 00:00."),
    ],
)
def test_a_replay_that_cannot_run_says_why_and_changes_nothing(console_as, tx, stored, form, message):
    admin = console_as("admin")
    resp = admin.submit(REPLAY, form, form_page="/admin/")
    assert resp.status_code == 302
    page = admin.get(resp.headers["Location"]).get_data(as_text=True)
    assert re.search(r'<p class="flash flash-error" role="status">[^<]*' + re.escape(message), page)
    assert replays(tx) == 0


def test_replaying_an_unknown_event_is_a_404_page(console_as, tx, stored):
    resp = console_as("admin").submit(REPLAY, {"event_id": "evt_ghost", "reason": "x"}, form_page="/admin/")
    assert resp.status_code == 404 and "No event has the id" in resp.get_data(as_text=True)
    assert replays(tx) == 0


def test_an_anonymous_replay_is_sent_to_sign_in(console):
    resp = console.client.post(REPLAY, data={"event_id": "evt_0"})
    assert resp.status_code in (302, 400)
    if resp.status_code == 302:
        assert resp.headers["Location"].startswith(LOGIN)
