"""Keyset pages: the same cost at any depth, newest first."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    next_cursor: tuple[Any, ...] | None  # the sort key of the last item, when more follow


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
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    if after is not None:
        stmt = stmt.where(tuple_(*order) < tuple_(*after))
    rows = list(session.scalars(stmt.order_by(*(column.desc() for column in order)).offset(skip).limit(limit + 1)))
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items=items, total=total, next_cursor=key(items[-1]) if more else None)
