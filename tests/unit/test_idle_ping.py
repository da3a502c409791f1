"""Pooled connections are pinged after an idle spell only, and a dead one is replaced before use."""

from __future__ import annotations

import sqlite3

from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool

from app import extensions
from app.extensions import ping_idle_connections


def _engine(tmp_path, monkeypatch):
    engine = create_engine(f"sqlite:///{tmp_path / 'ping.db'}", poolclass=QueuePool, pool_size=1)
    pings = []

    def ping(dbapi_connection):
        pings.append(dbapi_connection)
        if getattr(engine, "server_gone", False):
            raise sqlite3.OperationalError("server closed the connection unexpectedly")
        return True

    monkeypatch.setattr(engine.dialect, "do_ping", ping)
    ping_idle_connections(engine)
    return engine, pings


def _use(engine):
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        return connection.connection.dbapi_connection


def test_a_connection_back_within_the_idle_time_is_not_pinged(tmp_path, monkeypatch):
    engine, pings = _engine(tmp_path, monkeypatch)
    first = _use(engine)
    assert _use(engine) is first
    assert pings == []


def test_an_idle_connection_is_pinged_and_replaced_when_dead(tmp_path, monkeypatch):
    engine, pings = _engine(tmp_path, monkeypatch)
    monkeypatch.setattr(extensions, "PING_AFTER_IDLE_SECONDS", 0.0)
    first = _use(engine)
    assert _use(engine) is first and pings == [first]
    engine.server_gone = True
    replacement = _use(engine)
    assert replacement is not first and pings[-1] is first
