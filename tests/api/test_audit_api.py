import csv
import io
from datetime import timedelta

import pytest

from app import audit_csv
from app.services import audit
from app.services.actor import Actor
from app.services.uow import unit_of_work

URL = "/v1/admin/billing/audit"


@pytest.fixture
def entries(tx, frozen_clock):
    """Five entries a minute apart by two actors, made after the caller's key."""

    def make():
        made = []
        for i, (who, user) in enumerate(
            [("ann", "user-a"), ("ben", "user-b"), ("ann", "user-b"), ("ben", "user-a"), ("ann", "user-a")]
        ):
            frozen_clock.advance(minutes=1)
            with unit_of_work() as session:
                made.append(
                    audit.record(
                        session,
                        Actor.cli(who),
                        "grace.reset",
                        user,
                        {"n": i},
                        {"n": i + 1},
                        now=frozen_clock.now,
                        reason=f"step {i}",
                    )
                )
        return made

    return make


def test_the_audit_log_lists_newest_first_in_the_documented_shape(api, entries):
    client = api("viewer")
    made = entries()
    body = client.get(f"{URL}?actor=ann").get_json()
    assert list(body) == ["items", "total", "total_is_estimate", "next_cursor"]
    assert body["total"] == 3 and body["next_cursor"] is None
    assert [item["id"] for item in body["items"]] == [made[4].id, made[2].id, made[0].id]
    item = body["items"][0]
    assert set(item) == {"id", "created_at", "actor", "action", "user_id", "reason", "before", "after", "context"}
    assert item["created_at"] == made[4].created_at.isoformat()
    assert item["created_at"].endswith("+00:00")
    assert (item["reason"], item["before"], item["after"]) == ("step 4", {"n": 4}, {"n": 5})


@pytest.mark.parametrize(
    "query, expected",
    [("user_id=user-b", [2, 1]), ("actor=ben&user_id=user-a", [3]), ("action=grace.reset&actor=ann", [4, 2, 0])],
)
def test_filters_combine(api, entries, query, expected):
    client = api("viewer")
    made = entries()
    body = client.get(f"{URL}?{query}").get_json()
    assert [item["id"] for item in body["items"]] == [made[i].id for i in expected]


def test_since_is_inclusive_and_until_exclusive(api, entries):
    client = api("viewer")
    made = entries()
    since = made[1].created_at.isoformat()
    until = made[3].created_at.isoformat()
    body = client.get(URL, query_string={"since": since, "until": until, "action": "grace.reset"}).get_json()
    assert [item["id"] for item in body["items"]] == [made[2].id, made[1].id]


def test_the_cursor_walks_every_page_once(api, entries):
    client = api("viewer")
    made = entries()
    seen, cursor = [], None
    while True:
        query = {"action": "grace.reset", "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = client.get(URL, query_string=query).get_json()
        assert body["total"] == 5
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [entry.id for entry in reversed(made)]


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("since=2026-11-25T10:00:00", "since"),
        ("since=yesterday", "since"),
        ("cursor=bogus", "cursor"),
        ("format=xml", "format"),
    ],
)
def test_bad_filters_are_invalid_parameters(api, query, field):
    resp = api("viewer").get(f"{URL}?{query}")
    assert resp.status_code == 400
    assert resp.get_json()["code"] == "invalid_parameters"
    assert field in resp.get_json()["errors"]


def _csv(resp):
    return list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))


@pytest.mark.parametrize(
    "how",
    [
        {"query_string": {"actor": "ben", "limit": 1, "format": "csv"}},
        {"query_string": {"actor": "ben", "limit": 1}, "headers": {"Accept": "text/csv"}},
    ],
)
def test_csv_export_streams_every_match(api, entries, how):
    client = api("viewer")
    made = entries()
    resp = client.get(URL, **how)
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert resp.is_streamed
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = _csv(resp)
    assert [int(row["id"]) for row in rows] == [made[3].id, made[1].id]  # all matches, not one page
    assert rows[0]["before"] == '{"n": 3}' and rows[0]["actor"] == "ben"


def test_csv_cells_cannot_smuggle_spreadsheet_formulas(api, tx, frozen_clock):
    client = api("viewer")
    with unit_of_work() as session:
        audit.record(
            session,
            Actor.cli('=HYPERLINK("http://evil")'),
            "grace.reset",
            "user-x",
            None,
            None,
            now=frozen_clock.now + timedelta(seconds=1),
            reason="+1 goodwill",
        )
    [row] = _csv(client.get(URL, query_string={"format": "csv", "user_id": "user-x"}))
    assert row["actor"].startswith("'=") and row["reason"] == "'+1 goodwill"


@pytest.mark.parametrize(
    "query, field",
    [
        ({"user_id": "user\x00x"}, "user_id"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"cursor": "WzNd"}, "cursor"),
    ],
)
def test_csv_export_with_bad_input_is_a_problem_before_any_byte(api, query, field):
    resp = api("viewer").get(URL, query_string={**query, "format": "csv"})
    assert (resp.status_code, resp.mimetype) == (400, "application/problem+json")
    assert list(resp.get_json()["errors"]) == [field]


def test_csv_export_runs_its_first_query_before_answering(api, monkeypatch):
    client = api("viewer")

    def failing_query(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(audit, "_filtered", failing_query)
    resp = client.get(URL, query_string={"format": "csv"})
    assert (resp.status_code, resp.mimetype) == (500, "application/problem+json")
    assert resp.get_json()["code"] == "internal_error"


def test_a_csv_export_spanning_several_batches_streams_every_row(api, entries, monkeypatch):
    client = api("viewer")
    made = entries()
    real = audit.iter_entries
    monkeypatch.setattr(audit, "iter_entries", lambda filters, actor: real(filters, actor=actor, batch_size=2))
    rows = _csv(client.get(URL, query_string={"format": "csv", "action": "grace.reset"}))
    assert [int(row["id"]) for row in rows] == [entry.id for entry in reversed(made)]


def test_a_csv_export_failing_midway_ends_with_a_line_saying_it_is_incomplete(api, entries, monkeypatch, caplog):
    client = api("viewer")
    entries()
    real_row, calls = audit_csv._csv_row, []

    def row_then_fail(entry):
        calls.append(entry)
        if len(calls) > 2:
            raise RuntimeError("connection lost")
        return real_row(entry)

    monkeypatch.setattr(audit_csv, "_csv_row", row_then_fail)
    resp = client.get(URL, query_string={"format": "csv"}, headers={"X-Request-ID": "export-7"})
    assert resp.status_code == 200
    lines = resp.get_data(as_text=True).splitlines()
    assert len(lines) == 4  # header, two rows, the warning
    assert lines[-1].startswith("# EXPORT INCOMPLETE") and "export-7" in lines[-1]
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.request_id == "export-7" and "connection lost" in caplog.text


def test_the_csv_file_is_exactly_the_documented_format(api, tx, frozen_clock):
    """Byte for byte: CRLF lines, minimal quoting, JSON with sorted keys and ASCII escapes, formulas defused."""
    client = api("viewer")
    with unit_of_work() as session:
        entry = audit.record(
            session,
            Actor.cli('ops, "night"'),
            "entitlements.override",
            "user-ü",
            {"z": 1, "a": [1.5, None, True], "ü": "é"},
            {"credits": -5},
            now=frozen_clock.now + timedelta(seconds=1, microseconds=250),
            reason="-5 credits\nsecond line",
        )
        newer = audit.record(
            session,
            Actor.cli("ann"),
            "grace.reset",
            "user-ü",
            None,
            {"days": 7},
            now=frozen_clock.now + timedelta(days=2),
        )
    body = client.get(URL, query_string={"format": "csv", "user_id": "user-ü"}).get_data().decode()
    context = '"{""channel"": ""cli"", ""ip"": null, ""request_id"": null, ""user_agent"": null}"'
    assert body == (
        "id,created_at,actor,action,user_id,reason,before,after,context\r\n"
        f'{newer.id},2026-11-27T12:00:00+00:00,ann,grace.reset,user-ü,,,"{{""days"": 7}}",{context}\r\n'
        f'{entry.id},2026-11-25T12:00:01.000250+00:00,"ops, ""night""",entitlements.override,user-ü,'
        '"\'-5 credits\nsecond line","{""a"": [1.5, null, true], ""z"": 1, ""\\u00fc"": ""\\u00e9""}",'
        f'"{{""credits"": -5}}",{context}\r\n'
    )
