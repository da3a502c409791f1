"""Idempotency-Key on admin POSTs: replay, reuse with another request, in progress, per-key scope, expiry."""

import pytest
from sqlalchemy import func, select

from app import clock
from app.models import AdminKey, AuditEntry, IdempotencyKey, IdempotencyState, Subscription
from app.services import entitlements, idempotency
from app.services.errors import Conflict
from app.services.keys import hash_secret
from tests.factories import SubscriptionFactory

URL = "/v1/admin/billing/entitlements/override"
GRANT = {"user_id": "user-alice", "credits_delta": 10, "reason": "goodwill"}


@pytest.fixture(autouse=True)
def alice(tx, frozen_clock):
    SubscriptionFactory(user_id="user-alice", credits=100)


@pytest.fixture
def support(api):
    return api("support")


def credits(tx):
    tx.expire_all()
    return tx.scalar(select(Subscription.credits).where(Subscription.user_id == "user-alice"))


def overrides(tx):
    return tx.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "entitlements.override"))


def send(client, body=GRANT, key="retry-1", url=URL):
    return client.post(url, json=body, headers={"Idempotency-Key": key})


def test_a_retry_gets_the_first_answer_and_changes_nothing(support, tx):
    first = send(support)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    again = support.post(
        URL,
        data='{"reason":"goodwill",  "credits_delta":10, "user_id":"user-alice"}',  # same JSON, other spacing/order
        content_type="application/json",
        headers={"Idempotency-Key": "retry-1"},
    )
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert (credits(tx), overrides(tx)) == (110, 1)


def test_a_request_without_a_key_runs_every_time(support, tx):
    support.post(URL, json=GRANT)
    support.post(URL, json=GRANT)
    assert (credits(tx), overrides(tx)) == (120, 2)


@pytest.mark.parametrize(
    "body, url",
    [
        (GRANT | {"credits_delta": 11}, URL),
        ({"user_id": "user-alice", "days": 3}, "/v1/admin/billing/grace-period/reset"),
    ],
)
def test_the_same_key_with_another_request_is_refused(support, tx, body, url):
    send(support)
    resp = send(support, body, url=url)
    assert resp.status_code == 422
    assert resp.get_json()["code"] == "idempotency_key_reused"
    assert (credits(tx), overrides(tx)) == (110, 1)


def test_the_same_key_while_the_first_request_runs_is_in_progress(support, tx, frozen_clock):
    first = {}

    def slow_override(**kwargs):
        first["response"] = send(support)  # the same request arrives while this one is still running
        return real_override(**kwargs)

    real_override = entitlements.override_entitlements
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(entitlements, "override_entitlements", slow_override)
        assert send(support).status_code == 200
    assert first["response"].status_code == 409
    assert first["response"].get_json()["code"] == "idempotency_in_progress"
    assert (credits(tx), overrides(tx)) == (110, 1)


def test_a_key_whose_process_died_is_taken_over_after_the_timeout(support, tx, frozen_clock):
    signature = idempotency.fingerprint("POST", URL, GRANT)
    admin_key_id = tx.scalar(
        select(AdminKey.id).where(AdminKey.key_hash == hash_secret(support.headers["X-Admin-Key"]))
    )
    assert idempotency.claim(admin_key_id, "retry-1", signature, now=clock.utcnow()) is None
    tx.remove()  # then its process died, before its change: its session went with it
    assert send(support).status_code == 409
    frozen_clock.advance(seconds=idempotency.IN_FLIGHT_TIMEOUT.total_seconds())
    resp = send(support)
    assert resp.status_code == 200 and "Idempotent-Replayed" not in resp.headers
    assert (credits(tx), overrides(tx)) == (110, 1)
    assert send(support).headers["Idempotent-Replayed"] == "true"


def dies_before_storing_the_answer(tx):
    """A stand-in for `idempotency.finish` when the process dies after the request's work: its session goes too."""
    return lambda *args, **kwargs: tx.remove()


def test_a_retry_after_a_crash_between_the_change_and_its_answer_is_refused_not_run_again(
    support, tx, frozen_clock, monkeypatch
):
    with monkeypatch.context() as crash:
        crash.setattr(idempotency, "finish", dies_before_storing_the_answer(tx))
        assert send(support).status_code == 200  # an answer the client never got
    stamped = tx.scalar(select(IdempotencyKey.applied_at))
    assert stamped == frozen_clock.now  # written with the change, in its transaction
    frozen_clock.advance(seconds=idempotency.IN_FLIGHT_TIMEOUT.total_seconds())
    resp = send(support)
    assert (resp.status_code, resp.get_json()["code"]) == (409, "idempotency_in_progress")
    assert "answer was lost" in resp.get_json()["detail"] and "It will not run again" in resp.get_json()["detail"]
    assert (credits(tx), overrides(tx)) == (110, 1)


def test_a_server_error_after_the_change_committed_keeps_the_key_so_a_retry_cannot_run_it_again(
    support, tx, frozen_clock, monkeypatch
):
    def grant_then_fail(**kwargs):
        real_override(**kwargs)  # commits
        raise RuntimeError("rendering the answer failed")

    real_override = entitlements.override_entitlements
    with monkeypatch.context() as patch:
        patch.setattr(entitlements, "override_entitlements", grant_then_fail)
        assert send(support).status_code == 500
    assert send(support).status_code == 409
    frozen_clock.advance(seconds=idempotency.IN_FLIGHT_TIMEOUT.total_seconds())
    assert "answer was lost" in send(support).get_json()["detail"]
    assert (credits(tx), overrides(tx)) == (110, 1)


def test_a_request_refused_before_any_change_leaves_no_stamp_and_its_retry_runs(support, tx, frozen_clock, monkeypatch):
    with monkeypatch.context() as crash:
        crash.setattr(idempotency, "finish", dies_before_storing_the_answer(tx))
        assert send(support, GRANT | {"user_id": "user-nobody"}, key="nobody").status_code == 404
    assert tx.scalar(select(IdempotencyKey.applied_at).where(IdempotencyKey.key == "nobody")) is None
    frozen_clock.advance(seconds=idempotency.IN_FLIGHT_TIMEOUT.total_seconds())
    again = send(support, GRANT | {"user_id": "user-nobody"}, key="nobody")
    assert again.status_code == 404 and "Idempotent-Replayed" not in again.headers  # taken over and run anew


def test_keys_are_scoped_per_admin_key(api, support, tx):
    send(support)
    other = send(api("support"))
    assert other.status_code == 200 and "Idempotent-Replayed" not in other.headers
    assert (credits(tx), overrides(tx)) == (120, 2)


def test_a_key_expires_after_24_hours_and_is_purged(support, tx, frozen_clock):
    send(support)
    frozen_clock.advance(hours=23, minutes=59)
    assert send(support).headers["Idempotent-Replayed"] == "true"
    assert idempotency.purge_expired_idempotency_keys(clock.utcnow()) == 0
    frozen_clock.advance(minutes=1)
    assert idempotency.purge_expired_idempotency_keys(clock.utcnow()) == 1
    assert tx.scalar(select(func.count()).select_from(IdempotencyKey)) == 0
    resp = send(support)
    assert resp.status_code == 200 and "Idempotent-Replayed" not in resp.headers
    assert (credits(tx), overrides(tx)) == (120, 2)


def test_an_expired_key_not_yet_purged_is_claimed_afresh(support, tx, frozen_clock):
    send(support)
    frozen_clock.advance(hours=24)
    assert "Idempotent-Replayed" not in send(support, GRANT | {"credits_delta": 1}).headers
    assert credits(tx) == 111


def test_a_refusal_is_replayed_too(support, tx):
    body = {"user_id": "user-alice", "credits_delta": -1000}
    first = send(support, body)
    assert (first.status_code, first.get_json()["code"]) == (422, "rule_violation")
    again = send(support, body)
    assert again.status_code == 422 and again.mimetype == "application/problem+json"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()


def test_a_conflict_is_not_kept_so_the_retry_runs(support, tx, monkeypatch):
    def conflict(**kwargs):
        raise Conflict("The record changed while this request ran; reload it and try again.")

    monkeypatch.setattr(entitlements, "override_entitlements", conflict)
    assert send(support).status_code == 409
    monkeypatch.undo()
    resp = send(support)
    assert resp.status_code == 200 and "Idempotent-Replayed" not in resp.headers
    assert credits(tx) == 110


def test_the_key_is_claimed_before_the_work_runs(support, tx, monkeypatch):
    seen = []
    real_override = entitlements.override_entitlements

    def spy(**kwargs):
        seen.append(tx.scalar(select(IdempotencyKey.state).where(IdempotencyKey.key == "retry-1")))
        return real_override(**kwargs)

    monkeypatch.setattr(entitlements, "override_entitlements", spy)
    send(support)
    assert seen == [IdempotencyState.IN_FLIGHT]
    assert tx.scalar(select(IdempotencyKey.state)) == IdempotencyState.DONE


@pytest.mark.parametrize("key", ["has space", "x" * 256, "ключ"])
def test_a_malformed_key_is_invalid_parameters(support, tx, key):
    resp = support.post(URL, json=GRANT, headers={"Idempotency-Key": key.encode().decode("latin-1")})
    assert resp.status_code == 400
    assert resp.get_json()["errors"] == {"Idempotency-Key": ["Not a valid idempotency key."]}
    assert credits(tx) == 100


def test_a_key_with_a_trailing_newline_is_not_valid():
    """HTTP cannot carry it, but the rule must match the whole key: `re.match` with `$` lets "\\n" through."""
    assert idempotency.is_valid_key("retry-1")
    assert not idempotency.is_valid_key("retry-1\n")


def test_every_admin_post_documents_the_header(client):
    spec = client.get("/openapi.json").get_json()
    posts = {path: ops["post"] for path, ops in spec["paths"].items() if "post" in ops}
    public = {"/v1/billing/webhooks"}  # signed by the provider, which retries by event id, not Idempotency-Key
    assert "/v1/admin/billing/webhook/replay" in posts and set(posts) >= public
    for path, operation in posts.items():
        if path in public:
            continue
        assert path.startswith("/v1/admin/billing/")
        assert "Idempotency-Key" in [parameter["name"] for parameter in operation["parameters"]]
        assert "Idempotent-Replayed" in operation["responses"]["200"]["headers"]
