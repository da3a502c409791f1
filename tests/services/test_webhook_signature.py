"""The signature check: Stripe's scheme, both ways against the official SDK, and every way it must refuse."""

import json

import pytest
import stripe

from app.services.errors import InvalidSignature
from app.services.webhooks import verify_signature
from tests.webhooks import OTHER_SECRET, SECRET, sign

BODY = json.dumps({"id": "evt_1", "type": "invoice.paid", "created": 1764000000}).encode()
T = 1764072000  # 2025-11-25T12:00:00Z


def now_at(seconds_after_t: int = 0):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T + seconds_after_t, UTC)


def test_the_stripe_sdk_accepts_what_our_test_helper_signs(monkeypatch):
    monkeypatch.setattr("time.time", lambda: T + 10)
    header = sign(BODY, SECRET, timestamp=T)
    event = stripe.Webhook.construct_event(BODY, header, SECRET, tolerance=300)
    assert event["id"] == "evt_1"


def test_our_verifier_accepts_what_the_stripe_sdk_signs():
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, timestamp=T)
    verify_signature(BODY, header, [SECRET], now=now_at(10))


@pytest.mark.parametrize(
    "header, secrets, now, message",
    [
        (sign(BODY, "whsec_wrong", timestamp=T), [SECRET], now_at(), "No v1 signature matches"),
        (sign(BODY, SECRET, timestamp=T), [SECRET], now_at(301), "301 s old"),
        (sign(BODY, SECRET, timestamp=T), [SECRET], now_at(-301), "301 s ahead"),
        (None, [SECRET], now_at(), "missing"),
        ("", [SECRET], now_at(), "missing"),
        ("garbage", [SECRET], now_at(), "malformed"),
        (f"t=abc,v1={'0' * 64}", [SECRET], now_at(), "numeric t"),
        (f"t={T}", [SECRET], now_at(), "at least one v1"),
        (f"t={T},v0=" + sign(BODY, SECRET, timestamp=T).split("v1=")[1], [SECRET], now_at(), "at least one v1"),
        (sign(BODY, SECRET, timestamp=T), [], now_at(), "No WEBHOOK_SECRET"),
        (f"t=999999999999,v1={'0' * 64}", [SECRET], now_at(), "ahead"),
        (
            sign(BODY, SECRET, timestamp=T).upper().replace("T=", "t=").replace("V1=", "v1="),
            [SECRET],
            now_at(),
            "match",
        ),
    ],
    ids=[
        "wrong-secret",
        "old",
        "future",
        "missing",
        "empty",
        "garbage",
        "bad-t",
        "no-v1",
        "other-scheme",
        "no-secret",
        "year-33658",
        "uppercase-hex",
    ],
)
def test_a_bad_signature_is_refused(header, secrets, now, message):
    with pytest.raises(InvalidSignature, match=message):
        verify_signature(BODY, header, secrets, now=now)


def test_a_body_changed_by_one_byte_is_refused():
    header = sign(BODY, SECRET, timestamp=T)
    changed = BODY.replace(b"evt_1", b"evt_2")
    with pytest.raises(InvalidSignature):
        verify_signature(changed, header, [SECRET], now=now_at())


def test_any_matching_v1_is_accepted():
    good = sign(BODY, SECRET, timestamp=T).split("v1=")[1]
    verify_signature(BODY, f"t={T},v1={'0' * 64},v1={good}", [SECRET], now=now_at())


def test_every_configured_secret_is_accepted_for_rotation():
    verify_signature(BODY, sign(BODY, OTHER_SECRET, timestamp=T), [SECRET, OTHER_SECRET], now=now_at(300))
    verify_signature(BODY, sign(BODY, SECRET, timestamp=T), [SECRET, OTHER_SECRET], now=now_at(-300))
