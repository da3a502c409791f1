"""The plan catalog: its entries and whether the provider changed it since the last sync."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.models.plans import CatalogState

_CATALOG_ROW = 1


@dataclass(frozen=True)
class CatalogStatus:
    stale: bool
    stale_since: datetime | None
    stale_reason: str | None
    synced_at: datetime | None


def catalog_status(session: Session) -> CatalogStatus:
    """Whether a price, product or plan event arrived since the last sync."""
    state = session.get(CatalogState, _CATALOG_ROW)
    if state is None:
        return CatalogStatus(False, None, None, None)
    return CatalogStatus(state.stale_since is not None, state.stale_since, state.stale_reason, state.synced_at)


def mark_catalog_stale(session: Session, reason: str, *, now: datetime) -> bool:
    """Note in the caller's transaction that the provider's catalog changed; False if it was already stale."""
    state = _state_for_update(session)
    if state.stale_since is not None:
        return False
    state.stale_since, state.stale_reason = now, reason[:300]
    return True


def mark_catalog_synced(session: Session, *, now: datetime) -> None:
    """Note in the caller's transaction that the catalog was just synced from the provider."""
    state = _state_for_update(session)
    state.stale_since, state.stale_reason, state.synced_at = None, None, now


def _state_for_update(session: Session) -> CatalogState:
    state = session.get(CatalogState, _CATALOG_ROW, with_for_update=True)
    if state is None:
        state = CatalogState(id=_CATALOG_ROW)
        session.add(state)
        session.flush()
    return state
