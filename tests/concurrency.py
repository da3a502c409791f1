"""Real concurrency for tests that run in a database of their own (see the `own_database` fixture)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import flask_migrate
from flask import Flask

from app import create_app
from app.config import TestConfig
from app.extensions import db


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
