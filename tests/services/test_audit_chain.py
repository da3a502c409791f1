"""The keyed chain against someone who can write to the database (issue 11, item 7), on SQLite and PostgreSQL."""

from dataclasses import dataclass

import pytest
from sqlalchemy import select, text

from app import clock
from app.models import AuditEntry
from app.services import audit
from app.services.audit import Checkpoint, Keyring
from app.services.benchdata import bulk_insert
from app.services.uow import unit_of_work

OTHER_KEY = "another-audit-key-of-at-least-32-characters"


def _record(actor, before=None, after=None):
    with unit_of_work() as session:
        return audit.record(session, actor, "grace.reset", "user-bob", before, after, now=clock.utcnow())


@dataclass(frozen=True)
class Signed:
    id: int
    hash: str
    key_id: str


@pytest.fixture
def chain(tx, cli_actor):
    """Three rows, oldest first, as they were written (the rows themselves may be tampered with later)."""
    return [Signed(e.id, e.hash, e.key_id) for e in (_record(cli_actor, after={"n": n}) for n in range(3))]


def _problem(expected=None):
    report = audit.verify_chain(expected)
    assert not report.ok
    return report.first_bad_id, report.problem


def test_deleting_the_newest_row_is_caught_by_a_checkpoint(chain, tamper):
    kept = audit.checkpoint(audit.verify_chain(), now=clock.utcnow())
    with tamper() as session:
        session.execute(text("DELETE FROM billing_admin_audit WHERE id = :id"), {"id": chain[-1].id})
    assert audit.verify_chain().ok  # without a checkpoint a cut tail cannot show
    bad_id, problem = _problem(kept)
    assert bad_id == chain[-1].id and "removed from its end" in problem


def test_a_newest_row_replaced_by_a_later_write_is_caught_by_a_checkpoint(chain, tamper, cli_actor):
    kept = audit.checkpoint(audit.verify_chain(), now=clock.utcnow())
    with tamper() as session:
        session.execute(text("DELETE FROM billing_admin_audit WHERE id = :id"), {"id": chain[-1].id})
    replacement = _record(cli_actor, after={"n": "other"})  # takes the deleted row's id
    assert replacement.id == chain[-1].id
    bad_id, problem = _problem(kept)
    assert bad_id == replacement.id and "removed or replaced" in problem


def test_an_edit_resigned_with_the_apps_own_function_but_without_the_key_is_caught(app, chain, tamper):
    signing_id = audit.keyring().signing_id
    guessed = Keyring({signing_id: b"not-the-audit-key"}, signing_id)
    with tamper() as session:
        prev_hash = chain[0].hash
        for entry in session.scalars(select(AuditEntry).where(AuditEntry.id > chain[0].id).order_by(AuditEntry.id)):
            entry.after, entry.prev_hash = {"n": 999}, prev_hash
            audit.seal(entry, guessed)
            prev_hash = entry.hash
    assert _problem() == (chain[1].id, "its MAC does not match (the row was edited or forged)")


def test_a_row_appended_by_hand_is_caught(chain, tamper, cli_actor):
    forged = AuditEntry(
        id=chain[-1].id + 1,
        created_at=clock.utcnow(),
        actor="bootstrap",
        action="admin_key.create",
        user_id=None,
        reason=None,
        before=None,
        after={"name": "backdoor", "role": "admin"},
        context={"channel": "cli"},
        prev_hash=chain[-1].hash,
    )
    audit.seal(forged, Keyring.of([OTHER_KEY]))
    with tamper() as session:
        session.add(forged)
    bad_id, problem = _problem()
    assert bad_id == forged.id and "not in AUDIT_KEY" in problem


def test_shifted_ids_are_caught(chain, tamper):
    with tamper() as session:
        session.execute(text("UPDATE billing_admin_audit SET id = id + 1000"))
    assert _problem() == (chain[0].id + 1000, "the row was edited: id no longer as signed")


def test_reordered_rows_are_caught(chain, tamper):
    first, second = chain[0].id, chain[1].id
    with tamper() as session:
        for old, new in ((first, -1), (second, first), (-1, second)):
            session.execute(text("UPDATE billing_admin_audit SET id = :new WHERE id = :old"), {"old": old, "new": new})
    bad_id, problem = _problem()
    assert bad_id == first and "missing or moved" in problem


def test_floats_read_back_from_the_database_still_verify(tx, cli_actor):
    _record(cli_actor, before={"big": 1e16, "negative_zero": -0.0, "tenth": 0.1, "huge": 1e300})
    tx.expire_all()
    assert audit.verify_chain().ok


def test_rotating_the_key_keeps_old_rows_valid_and_a_wrong_key_fails(app, chain, cli_actor, monkeypatch):
    old = app.config["AUDIT_KEYS"]
    monkeypatch.setitem(app.config, "AUDIT_KEYS", [OTHER_KEY, *old])
    newer = _record(cli_actor)
    assert newer.key_id != chain[0].key_id == audit.key_id(old[0])
    assert audit.verify_chain().ok and audit.verify_chain().checked == 4

    monkeypatch.setitem(app.config, "AUDIT_KEYS", [OTHER_KEY])
    bad_id, problem = _problem()
    assert bad_id == chain[0].id and f"key {chain[0].key_id!r}, which is not in AUDIT_KEY" in problem


def test_a_checkpoint_with_a_changed_field_or_another_key_is_rejected(app, chain, monkeypatch):
    kept = audit.checkpoint(audit.verify_chain(), now=clock.utcnow())
    assert audit.verify_chain(Checkpoint.from_json(kept.to_json())).ok
    for forged in (kept.to_json().replace(f'"count":{kept.count}', '"count":2'),):
        assert _problem(Checkpoint.from_json(forged)) == (
            None,
            "the checkpoint's signature does not match under any AUDIT_KEY",
        )
    monkeypatch.setitem(app.config, "AUDIT_KEYS", [OTHER_KEY])
    assert "signature does not match" in _problem(kept)[1]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "[]",
        '{"last_id": 1}',
        '{"last_id": "1", "head_hash": "x", "count": 1, "created_at": "", "key_id": "", "signature": ""}',
        "[" * 100_000,
    ],
)
def test_anything_but_a_checkpoint_is_refused(raw):
    with pytest.raises(ValueError, match="not an audit checkpoint"):
        Checkpoint.from_json(raw)


def test_the_head_and_count_of_a_checkpoint_are_the_chains(chain, tx):
    kept = audit.checkpoint(audit.verify_chain(), now=clock.utcnow())
    assert (kept.last_id, kept.head_hash, kept.count) == (chain[-1].id, chain[-1].hash, 3)
    assert kept.key_id == audit.keyring().signing_id
    assert tx.scalar(select(AuditEntry.canonical).where(AuditEntry.id == chain[0].id)).startswith('{"action"')


def test_rows_sealed_in_a_batch_extend_the_chain_and_an_edit_among_them_is_caught(tx, chain, cli_actor, tamper):
    context = {"channel": "cli", "request_id": None, "ip": None, "user_agent": None}
    drafts = [
        {"created_at": clock.utcnow(), "actor": "loader", "action": "grace.reset", "user_id": f"user-{n}"}
        | {"reason": None, "before": None, "after": {"n": n}, "context": context}
        for n in range(4)
    ]
    with unit_of_work() as session:
        rows = audit.seal_batch(session, drafts)
        bulk_insert(session, AuditEntry.__table__, rows)
    assert [row["id"] for row in rows] == [chain[-1].id + n for n in range(1, 5)]
    assert rows[0]["prev_hash"] == chain[-1].hash
    after = _record(cli_actor, after={"n": "after the batch"})
    assert after.prev_hash == rows[-1]["hash"]
    assert audit.verify_chain().ok
    with tamper() as session:
        session.execute(text("UPDATE billing_admin_audit SET user_id = 'user-x' WHERE id = :id"), {"id": rows[2]["id"]})
    assert _problem()[0] == rows[2]["id"]
