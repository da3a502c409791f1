import pytest
from sqlalchemy import select

from app.models import AdminSession, AuditEntry
from app.services import keys, sessions
from tests.conftest import ORIGIN


@pytest.fixture
def key(tx, cli_actor, frozen_clock):
    created = keys.create_key("agent", "support", actor=cli_actor, now=frozen_clock.now)
    return keys.authenticate(created.secret, bootstrap_secret=None, origin=ORIGIN, now=frozen_clock.now)


def test_a_session_id_is_random_and_only_its_hash_is_stored(tx, key, cli_actor, frozen_clock):
    first = sessions.start_session(key, actor=cli_actor, now=frozen_clock.now)
    second = sessions.start_session(key, actor=cli_actor, now=frozen_clock.now)
    assert first.session_id != second.session_id
    stored = tx.scalars(select(AdminSession.session_hash)).all()
    assert first.session_id not in stored
    assert tx.get(AuditEntry, first.audit_id).action == "console.login"


def test_a_session_lives_while_used_and_ends_after_30_idle_minutes(tx, key, cli_actor, frozen_clock):
    started = sessions.start_session(key, actor=cli_actor, now=frozen_clock.now)
    for _ in range(3):
        frozen_clock.advance(minutes=29)
        assert sessions.resume_session(started.session_id, now=frozen_clock.now).name == "agent"
    frozen_clock.advance(minutes=31)
    assert sessions.resume_session(started.session_id, now=frozen_clock.now) is None
    frozen_clock.advance(seconds=1)
    assert sessions.resume_session(started.session_id, now=frozen_clock.now) is None


def test_a_session_ends_after_12_hours_however_busy(tx, key, cli_actor, frozen_clock):
    started = sessions.start_session(key, actor=cli_actor, now=frozen_clock.now)
    for _ in range(12 * 4):
        frozen_clock.advance(minutes=15)
        alive = sessions.resume_session(started.session_id, now=frozen_clock.now)
    assert alive is not None  # exactly 12 h
    frozen_clock.advance(minutes=1)
    assert sessions.resume_session(started.session_id, now=frozen_clock.now) is None


def test_logout_ends_the_session_once(tx, key, cli_actor, frozen_clock):
    started = sessions.start_session(key, actor=cli_actor, now=frozen_clock.now)
    sessions.end_session(started.session_id, actor=cli_actor, now=frozen_clock.now)
    sessions.end_session(started.session_id, actor=cli_actor, now=frozen_clock.now)
    assert sessions.resume_session(started.session_id, now=frozen_clock.now) is None
    assert len(tx.scalars(select(AuditEntry).where(AuditEntry.action == "console.logout")).all()) == 1


@pytest.mark.parametrize("session_id", [None, "", "forged"])
def test_unknown_session_ids_resume_nothing(tx, session_id, frozen_clock):
    assert sessions.resume_session(session_id, now=frozen_clock.now) is None
