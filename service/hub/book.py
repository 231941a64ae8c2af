"""``HubBook``: the logbook's read interface over the hub's store, so the report and exports run unchanged.

Only the queries are the hub's (SQLAlchemy, portable to SQLite and PostgreSQL); every row is read through the
logbook's own checks (``service.logbook.book.StoredRows``): a session stored on the hub reads exactly as it reads
on the Pi. Where the Pi orders by ``rowid`` the hub orders by its ``id`` (rows are inserted in the Pi's order).
Only complete sessions are seen (a session whose parts are still arriving is not there yet).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import and_, case, func, select

from stackcue.firmware_bridge.block import Block

from ..logbook.book import StoredRows, no_strides
from ..wallclock import EARLIEST_EPOCH, LATEST_EPOCH
from . import tables as T

if TYPE_CHECKING:
    from .store import HubStore

_S = T.sessions
_SESSION_SELECT = [_S.c[c] for c in T.SESSION_COLUMNS]


def _complete_sessions():
    """The sessions whose sync completed (``uploads.complete``)."""
    return (
        select(*_SESSION_SELECT).join(T.uploads, T.uploads.c.session == _S.c.id).where(T.uploads.c.complete.is_(True))
    )


def _start_order(row: Any) -> tuple:
    """SQLite's ``ORDER BY started_epoch, id`` on both stores: NULL first, ids by code point (not a locale)."""
    return (row[2] is not None, row[2] if row[2] is not None else 0.0, row[0])


class HubBook(StoredRows):
    """Read-only, Logbook-like view of a ``HubStore``: ``sessions``, ``session``, ``strides``, ``alerts``,
    ``events``, ``has_raw``, ``has_trunk``, ``raw_blocks``, ``raw_chunks``, ``stats``, ``runners``."""

    def __init__(self, store: HubStore) -> None:
        self.store = store
        self.path = f"hub {store.url}"  # named in warnings and errors, as a logbook's file is

    def close(self) -> None:
        """Nothing to release: each read takes a pooled connection of the store."""

    def __enter__(self) -> HubBook:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _rows(self, query) -> list:
        with self.store._read() as conn:
            return [tuple(r) for r in conn.execute(query)]

    # ------------------------------------------------------------------ sessions
    def sessions(self, runner: str | None = None, since_epoch: float | None = None) -> list[dict]:
        """As ``Logbook.sessions``: oldest first; with ``since_epoch``, only sessions of a known start from it."""
        q = _complete_sessions()
        if runner is not None:
            q = q.where(_S.c.runner == runner)
        if since_epoch is not None:
            q = q.where(_S.c.started_epoch >= max(since_epoch, EARLIEST_EPOCH), _S.c.started_epoch < LATEST_EPOCH)
        return [self._session_row(r) for r in sorted(self._rows(q), key=_start_order)]

    def session(self, session_id: str) -> dict | None:
        """As ``Logbook.session``: an id, a unique prefix, or ``latest``; an ambiguous prefix is a LogbookError."""
        if session_id == "latest":
            q = _complete_sessions().order_by(
                _S.c.started_epoch.desc().nulls_last(), _S.c.received_epoch.desc().nulls_last(), _S.c.id.desc()
            )
            rows = self._rows(q.limit(1))
            return self._session_row(rows[0]) if rows else None
        rows = self._rows(_complete_sessions().where(_S.c.id == session_id))
        if rows:
            return self._session_row(rows[0])
        rows = self._rows(
            _complete_sessions()
            .where(func.substr(_S.c.id, 1, len(session_id)) == session_id)
            .order_by(_S.c.started_epoch.asc().nulls_first(), _S.c.id)
            .limit(6)
        )
        return self._by_prefix(session_id, rows)

    def runners(self) -> list[str]:
        return sorted({r[1] for r in self._rows(_complete_sessions()) if r[1] is not None})

    # ------------------------------------------------------------------ a session's rows
    def strides(self, session_id: str) -> list[dict]:
        s = T.strides
        rows = self._rows(select(s.c.id, s.c.event).where(s.c.session == session_id).order_by(s.c.id))
        return self._strides_of(session_id, rows)

    def alerts(self, session_id: str) -> list[dict]:
        a = T.alerts
        rows = self._rows(
            select(a.c.id, a.c.alert_id, a.c.t, a.c.kind, a.c.payload, a.c.delivered, a.c.delivered_at, a.c.queued)
            .where(a.c.session == session_id)
            .order_by(a.c.alert_id, a.c.id)
        )
        return self._alerts_of(session_id, rows)

    def events(self, session_id: str, types: tuple[str, ...] | list[str] | None = None) -> list[dict]:
        e = T.events
        q = select(e.c.id, e.c.event).where(e.c.session == session_id)
        if types is not None:
            q = q.where(e.c.type.in_(list(types)))
        rows = self._rows(q.order_by(e.c.id))
        return [ev for _, ev in self._stored_events(session_id, "events", rows)]

    def stats(self) -> dict[str, dict]:
        """As ``Logbook.stats``, per complete session, in portable SQL (the hub's columns are typed)."""

        def fig(col: str, lo: float, hi: float):
            c = T.strides.c[col]
            return func.avg(case((and_(T.strides.c.steady == 1, c.between(lo, hi)), c)))

        s, done = T.strides, select(T.uploads.c.session).where(T.uploads.c.complete.is_(True))
        out: dict[str, dict] = {}
        for r in self._rows(
            select(
                s.c.session,
                func.count(),
                func.sum(case((s.c.steady == 1, 1), else_=0)),
                fig("cadence_spm", 0, 400),
                fig("pelvic_tilt_deg", -360, 360),
                fig("trunk_lean_deg", -360, 360),
                fig("stack_deg", -360, 360),
            )
            .where(s.c.session.in_(done))
            .group_by(s.c.session)
        ):
            out[r[0]] = {
                "strides": r[1],
                "steady": int(r[2] or 0),
                "cadence_spm": None if r[3] is None else float(r[3]),
                "pelvic_tilt_deg": None if r[4] is None else float(r[4]),
                "trunk_lean_deg": None if r[5] is None else float(r[5]),
                "stack_deg": None if r[6] is None else float(r[6]),
                "alerts": 0,
            }
        a = T.alerts
        for sid, n in self._rows(select(a.c.session, func.count()).where(a.c.session.in_(done)).group_by(a.c.session)):
            out.setdefault(sid, no_strides())["alerts"] = n
        return out

    # ------------------------------------------------------------------ raw samples
    def has_raw(self, session_id: str) -> bool:
        rc = T.raw_chunks
        return bool(self._rows(select(rc.c.id).where(rc.c.session == session_id).limit(1)))

    def has_trunk(self, session_id: str) -> bool:
        rc = T.raw_chunks
        return bool(self._rows(select(rc.c.id).where(rc.c.session == session_id, rc.c.trunk == 1).limit(1)))

    def raw_blocks(self, session_id: str) -> Iterator[Block]:
        """As ``Logbook.raw_blocks``: float64 blocks, one layout throughout."""
        yield from self._blocks_of(session_id)

    def raw_chunks(self, session_id: str, batch: int = 64) -> Iterator[dict[str, np.ndarray]]:
        """As ``Logbook.raw_chunks``, fetched ``batch`` rows at a time (an hour of samples is tens of MB)."""
        rc = T.raw_chunks
        q = select(rc.c.id, rc.c.data, rc.c.n, rc.c.trunk).where(rc.c.session == session_id)

        def rows() -> Iterator[tuple]:
            after: tuple[float, int] | None = None
            while True:
                page = q
                if after is not None:  # keyset paging on (t0, id): no long-held cursor or transaction
                    page = page.where((rc.c.t0 > after[0]) | ((rc.c.t0 == after[0]) & (rc.c.id > after[1])))
                got = self._rows(page.add_columns(rc.c.t0).order_by(rc.c.t0, rc.c.id).limit(batch))
                for r in got:
                    yield (r[0], bytes(r[1]), r[2], r[3])
                if len(got) < batch:
                    return
                after = (got[-1][4], got[-1][0])

        yield from self._chunks_of(session_id, rows())
