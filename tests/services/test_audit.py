from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from app import clock
from app.models import AdminKey, AuditEntry, Customer
from app.models.keys import Role
from app.services import audit, keys
from app.services.actor import Actor, Channel
from app.services.audit import GENESIS_HASH, AuditFilter
from app.services.uow import unit_of_work


def _record(actor, action="subscription.update", user_id="user-alice", **kwargs):
    with unit_of_work() as session:
        return audit.record(
            session, actor, action, user_id, {"credits": 1}, {"credits": 2}, now=clock.utcnow(), **kwargs
        )


def test_entries_form_a_chain_from_the_genesis_hash(tx, cli_actor):
    first = _record(cli_actor)
    second = _record(cli_actor, reason="goodwill")
    assert first.prev_hash == GENESIS_HASH  # each test starts from an empty log
    assert second.prev_hash == first.hash
    report = audit.verify_chain()
    assert report.ok and report.checked >= 2


def test_an_entry_stores_who_what_and_from_where(tx, frozen_clock):
    actor = Actor(name="ops", role=Role.SUPPORT, channel=Channel.API, request_id="r1", ip="10.0.0.9", user_agent="curl")
    entry = _record(actor, reason="card expired")
    stored = tx.get(AuditEntry, entry.id)
    assert (stored.actor, stored.action, stored.user_id, stored.reason) == (
        "ops",
        "subscription.update",
        "user-alice",
        "card expired",
    )
    assert stored.created_at == frozen_clock.now
    assert stored.before == {"credits": 1} and stored.after == {"credits": 2}
    assert stored.context == {"channel": "api", "request_id": "r1", "ip": "10.0.0.9", "user_agent": "curl"}


def test_a_failing_unit_of_work_leaves_neither_the_change_nor_its_audit_row(tx, cli_actor):
    audits_before = tx.scalar(select(func.count()).select_from(AuditEntry))
    with pytest.raises(RuntimeError), unit_of_work() as session:
        session.add(Customer(user_id="user-ghost", email="ghost@example.com"))
        audit.record(session, cli_actor, "subscription.update", "user-ghost", None, {}, now=clock.utcnow())
        raise RuntimeError("the provider call failed after the change was written")
    assert tx.scalar(select(Customer).where(Customer.user_id == "user-ghost")) is None
    assert tx.scalar(select(func.count()).select_from(AuditEntry)) == audits_before


def test_a_service_whose_audit_write_fails_changes_nothing(tx, cli_actor, monkeypatch):
    def broken_record(*args, **kwargs):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(audit, "record", broken_record)
    with pytest.raises(RuntimeError):
        keys.create_key("no-audit-no-key", "viewer", actor=cli_actor, now=clock.utcnow())
    assert tx.scalar(select(AdminKey).where(AdminKey.name == "no-audit-no-key")) is None


def test_verify_names_the_first_edited_row(tx, cli_actor, tamper):
    _record(cli_actor)
    edited = _record(cli_actor)
    _record(cli_actor)
    with tamper() as session:
        session.get(AuditEntry, edited.id).after = {"credits": 999999}
    report = audit.verify_chain()
    assert not report.ok
    assert report.first_bad_id == edited.id
    assert "edited" in report.problem


def test_verify_notices_a_deleted_row(tx, cli_actor, tamper):
    _record(cli_actor)
    deleted = _record(cli_actor)
    after = _record(cli_actor)
    with tamper() as session:
        session.execute(text("DELETE FROM billing_admin_audit WHERE id = :id"), {"id": deleted.id})
    report = audit.verify_chain()
    assert report.first_bad_id == after.id
    assert "missing" in report.problem


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE billing_admin_audit SET reason = 'rewritten' WHERE id = :id",
        "DELETE FROM billing_admin_audit WHERE id = :id",
    ],
)
def test_postgresql_refuses_to_edit_or_delete_audit_rows(tx, cli_actor, postgres_only, statement):
    entry = _record(cli_actor, reason="original")
    with pytest.raises(DBAPIError, match="append-only"), tx.begin_nested():
        tx.execute(text(statement), {"id": entry.id})
    assert tx.get(AuditEntry, entry.id).reason == "original"


def test_entries_are_listed_newest_first_and_filtered(tx, cli_actor, frozen_clock):
    ops = Actor.cli("ops")
    _record(ops, user_id="user-a", action="grace.reset")
    frozen_clock.advance(minutes=1)
    middle = _record(ops, user_id="user-b", action="grace.reset")
    frozen_clock.advance(minutes=1)
    newest = _record(ops, user_id="user-b", action="entitlements.override")

    page = audit.list_entries(AuditFilter(user_id="user-b"), actor=cli_actor, after=None, limit=50)
    assert [e.id for e in page.items] == [newest.id, middle.id]
    assert page.total == 2 and page.next_cursor is None

    page = audit.list_entries(AuditFilter(actor="ops", action="grace.reset"), actor=cli_actor, after=None, limit=50)
    assert [e.user_id for e in page.items] == ["user-b", "user-a"]

    window = AuditFilter(actor="ops", since=middle.created_at, until=newest.created_at)
    assert [e.id for e in audit.list_entries(window, actor=cli_actor, after=None, limit=50).items] == [middle.id]


def test_pages_follow_the_cursor_without_gaps_or_repeats(tx, cli_actor):
    ids = [_record(Actor.cli("pager")).id for _ in range(5)]
    seen, after = [], None
    while True:
        page = audit.list_entries(AuditFilter(actor="pager"), actor=cli_actor, after=after, limit=2)
        assert page.total == 5
        seen += [e.id for e in page.items]
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert seen == sorted(ids, reverse=True)


def test_export_streams_every_match_newest_first(tx, cli_actor, frozen_clock):
    for _ in range(3):
        _record(Actor.cli("exporter"))
        frozen_clock.advance(seconds=timedelta(minutes=1).total_seconds())
    exported = list(audit.iter_entries(AuditFilter(actor="exporter"), actor=cli_actor, batch_size=2))
    assert len(exported) == 3
    assert [e.id for e in exported] == sorted((e.id for e in exported), reverse=True)


def test_an_export_reads_its_first_batch_at_once_and_outlives_the_session(tx, cli_actor):
    """A streamed response outlives the request's session: later batches must not need the first one's."""
    ids = [_record(Actor.cli("streamer")).id for _ in range(5)]
    entries = audit.iter_entries(AuditFilter(actor="streamer"), actor=cli_actor, batch_size=2)
    _record(Actor.cli("streamer"))  # newer than all, written after the call: the first batch was read already
    first = next(entries)
    tx.remove()  # as Flask's teardown does once the view has returned
    assert [first.id, *(e.id for e in entries)] == sorted(ids, reverse=True)


def test_a_batched_block_links_its_rows_at_its_end_without_those_of_savepoints_rolled_back(tx, cli_actor):
    def note(session, n):
        return audit.record(session, cli_actor, "grace.reset", "user-bob", None, {"n": n}, now=clock.utcnow())

    with unit_of_work() as session, audit.batched(session):
        first = note(session, 1)
        with pytest.raises(RuntimeError), session.begin_nested():
            note(session, 2)
            with session.begin_nested():
                note(session, 3)  # released into the savepoint that rolls back: gone with it
            raise RuntimeError("the handler failed")
        with session.begin_nested():
            last = note(session, 4)
        assert first.id is None and tx.scalar(select(func.count()).select_from(AuditEntry)) == 0
    assert tx.execute(select(AuditEntry.id, AuditEntry.after).order_by(AuditEntry.id)).all() == [
        (first.id, {"n": 1}),
        (first.id + 1, {"n": 4}),
    ]
    assert last.prev_hash == first.hash and audit.verify_chain().ok


def test_a_batched_block_that_raises_writes_no_row(tx, cli_actor):
    with pytest.raises(RuntimeError), unit_of_work() as session, audit.batched(session):
        audit.record(session, cli_actor, "grace.reset", "user-bob", None, {}, now=clock.utcnow())
        raise RuntimeError("the batch failed")
    assert tx.scalar(select(func.count()).select_from(AuditEntry)) == 0
    assert audit.record(tx, cli_actor, "grace.reset", "user-bob", None, {}, now=clock.utcnow()).id is not None
