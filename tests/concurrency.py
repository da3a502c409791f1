"""Real concurrency for tests that run in a database of their own (see the `own_database` fixture)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import flask_migrate
from flask import Flask
from sqlalchemy import text

from app import create_app
from app.config import TestConfig
from app.extensions import db

WAIT = 60  # seconds before a test gives up on a thread that never gets there (a hang, not a timing assumption)


@contextmanager
def migrated_app(test_env: dict[str, str], url: str, *, revision: str = "head", **overrides: object) -> Iterator[Flask]:
    """An app on the database at `url`, migrated to `revision`; its connections are closed afterwards."""
    app = create_app(TestConfig({**test_env, "TEST_DATABASE_URL": url}, **overrides))
    with app.app_context():
        flask_migrate.upgrade(revision=revision)
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def run_together(app: Flask, work: Callable[[int], object], count: int) -> list[str]:
    """Run `work(n)` for n in range(count) in as many threads started at once, each with its own app context and
    connection; returns the exceptions they raised (an assertion inside a thread would otherwise be lost)."""
    start = threading.Barrier(count)
    failures: list[str] = []

    def run(n: int) -> None:
        with app.app_context():
            try:
                start.wait()
                work(n)
            except Exception as exc:
                failures.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return failures


def held(monkeypatch, module, name: str) -> tuple[threading.Event, threading.Event]:
    """Make `module.name` stop, once it has returned, until released: (it got there, release it)."""
    real, there, release = getattr(module, name), threading.Event(), threading.Event()

    def holding(*args, **kwargs):
        result = real(*args, **kwargs)
        there.set()
        assert release.wait(WAIT), f"{name} was never released"
        return result

    monkeypatch.setattr(module, name, holding)
    return there, release


def wait_until_someone_waits_for_a_lock(app) -> None:
    """Return once a connection to the test's database waits for a lock (PostgreSQL; on SQLite at once)."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + WAIT
        while not db.session.scalar(waiting):
            db.session.rollback()
            assert time.monotonic() < deadline, "the second transaction never waited for the first one's locks"
            time.sleep(0.01)  # polling a condition, not timing: the order is set by the locks
        db.session.remove()


def run_first_then_second(app, first, second, there, release) -> None:
    """Start `first`, and once it holds its locks (`there`) start `second`; release `first` once `second` waits."""
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert there.wait(WAIT), "the first transaction never got its locks"
    threads[1].start()
    wait_until_someone_waits_for_a_lock(app)
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
