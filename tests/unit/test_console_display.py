from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from app.console.access import safe_next
from app.console.display import ago, change_message, utc
from app.console.forms import assume_utc

NOW = datetime(2026, 11, 29, 14, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    "delta, shown",
    [
        (timedelta(seconds=20), "just now"),
        (timedelta(minutes=1), "1 min ago"),
        (timedelta(minutes=59), "59 min ago"),
        (timedelta(hours=1, minutes=30), "90 min ago"),
        (timedelta(hours=3), "3 h ago"),
        (timedelta(hours=47), "47 h ago"),
        (timedelta(days=3, hours=5), "3 d ago"),
        (-timedelta(days=6, hours=23), "in 6 d"),
        (-timedelta(minutes=5), "in 5 min"),
    ],
)
def test_relative_time_reads_naturally(delta, shown):
    assert ago(NOW - delta, now=NOW) == shown


def test_timestamps_are_shown_in_utc():
    assert utc(NOW) == "2026-11-29 14:03 UTC"
    assert utc(None) == ""


@dataclass
class Snapshot:
    credits: int
    plan: str
    valid_until: datetime | None
    version: int


def test_the_change_message_lists_what_changed_before_and_after():
    before = Snapshot(100, "pro", None, 3)
    after = Snapshot(600, "pro", NOW, 4)
    assert change_message(before, after) == "credits: 100 → 600; valid_until: none → 2026-11-29 14:03 UTC"
    assert change_message({"days": 3}, {"days": 3}) == "nothing changed"
    assert change_message(None, {"days": 14}) == "days: none → 14"


@pytest.mark.parametrize(
    "typed, read",
    [
        ("2026-11-29 14:00", "2026-11-29T14:00:00+00:00"),
        ("2026-11-29T14:00", "2026-11-29T14:00:00+00:00"),
        ("2026-11-29T14:00:00+02:00", "2026-11-29T14:00:00+02:00"),
        ("2026-11-29T14:00:00Z", "2026-11-29T14:00:00Z"),
        ("yesterday", "yesterday"),
        ("", ""),
        (None, None),
    ],
)
def test_a_typed_time_without_an_offset_is_utc(typed, read):
    assert assume_utc(typed) == read


@pytest.mark.parametrize(
    "target, kept",
    [
        ("/admin/audit?actor=ann", True),
        ("/admin/", True),
        ("", False),
        (None, False),
        ("admin/", False),
        ("https://evil.example/admin/", False),
        ("//evil.example/", False),
        ("/\\evil.example/", False),
        ("/\t/evil.example/", False),
        ("/admin/\n", False),
    ],
)
def test_only_paths_on_this_site_are_followed_after_sign_in(target, kept):
    assert safe_next(target) == (target if kept else None)
