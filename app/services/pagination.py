"""Keyset pages: the same cost at any depth, newest first.

`total` is exact up to EXACT_TOTAL_LIMIT matching rows. Beyond that, on PostgreSQL, counting every row would cost
as much as reading the table, so `total` is the planner's row estimate for the filtered query and the page says
`total_is_estimate`. SQLite (development, tests) always counts exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

T = TypeVar("T")

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
EXACT_TOTAL_LIMIT = 10_000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    next_cursor: tuple[Any, ...] | None  # the sort key of the last item, when more follow
    total_is_estimate: bool = False


def where_matching(
    stmt: Select,
    equal: Iterable[tuple[ColumnElement, Any]],
    moment: ColumnElement,
    since: datetime | None,
    until: datetime | None,
) -> Select:
    """`stmt` narrowed to rows whose columns equal the given values (None: any value) and whose `moment` lies
    in [since, until): the filters every list offers."""
    for column, value in equal:
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(moment >= since)
    if until is not None:
        stmt = stmt.where(moment < until)
    return stmt


def keyset_page(
    session: Session,
    stmt: Select,
    order: Sequence[ColumnElement],
    key: Callable[[T], tuple[Any, ...]],
    *,
    after: tuple[Any, ...] | None,
    limit: int,
    skip: int = 0,
) -> Page[T]:
    """One page of `stmt` in descending `order`, starting after the sort key `after` (then skipping `skip` rows)."""
    total, estimated = count_matching(session, stmt)
    if after is not None:
        stmt = stmt.where(tuple_(*order) < tuple_(*after))
    rows = list(session.scalars(stmt.order_by(*(column.desc() for column in order)).offset(skip).limit(limit + 1)))
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, total, key(items[-1]) if more else None, estimated)


def count_matching(session: Session, stmt: Select) -> tuple[int, bool]:
    """How many rows `stmt` matches, and whether that is an estimate (see the module's docstring)."""
    unordered = stmt.order_by(None)
    if session.get_bind().dialect.name != "postgresql":
        return session.scalar(select(func.count()).select_from(unordered.subquery())) or 0, False
    capped = unordered.limit(EXACT_TOTAL_LIMIT + 1).subquery()
    exact = session.scalar(select(func.count()).select_from(capped)) or 0
    if exact <= EXACT_TOTAL_LIMIT:
        return exact, False
    compiled = unordered.compile(session.get_bind())
    plan = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return max(int(plan[0]["Plan"]["Plan Rows"]), exact), True
