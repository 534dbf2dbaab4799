"""One leader among the bot processes that share a database.

Several ``fusionbot run`` replicas may serve one PostgreSQL database: all of them answer
Slack requests and send from the outbox (rows are claimed with ``FOR UPDATE SKIP LOCKED``),
but only one — the leader — runs the scheduler and the Matrix sync loop, which must not run
twice. The leader holds a PostgreSQL session-level advisory lock on a connection of its own;
when its process dies, PostgreSQL drops the session and the lock with it, and a follower,
trying every ``poll`` seconds, takes over. The leader checks its connection as often; if the
connection is lost it steps down at once (another process may already hold the lock).

SQLite allows one process only, so there the single process simply leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import Database

log = logging.getLogger(__name__)

# pg_advisory_lock takes a bigint: "fusionbt" as 8 ASCII bytes, unlikely to collide with
# another application's locks in the same database.
LOCK_KEY = int.from_bytes(b"fusionbt", "big") & 0x7FFF_FFFF_FFFF_FFFF
POLL_SECONDS = 1.0

Duty = Callable[[], Awaitable[None]]

LEADER, FOLLOWER = "leader", "follower"


class Leadership:
    def __init__(
        self,
        db: Database,
        *,
        on_elected: Duty,
        on_deposed: Duty,
        poll: float = POLL_SECONDS,
        key: int = LOCK_KEY,
    ) -> None:
        self.db = db
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._poll = poll
        self._key = key
        self._conn: AsyncConnection | None = None
        self._stop = asyncio.Event()
        self.role = FOLLOWER
        self.changed = asyncio.Event()  # set on every change of role (tests, health)

    @property
    def is_leader(self) -> bool:
        return self.role == LEADER

    async def run(self) -> None:
        """Campaign until stopped; lead while the lock is held."""
        if self._shared:
            log.info("leadership: this process follows until it holds the leader lock")
        failures = 0
        while not self._stop.is_set():
            try:
                if self.is_leader:
                    await self._still_holding()
                else:
                    await self._try_to_lead()
                failures = 0
            except Exception as exc:
                # The database went away (no lock is held any more), or a leader's duty
                # could not start (the Matrix homeserver refused the login): step down,
                # and try again, less often while it keeps failing.
                failures += 1
                log.warning("leadership: %s: %s; stepping down", type(exc).__name__, exc)
                await self._step_down()
            wait = self._poll * min(2 ** max(failures - 1, 0), 30)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=wait)
        await self._step_down(stopping=True)

    @property
    def _shared(self) -> bool:
        """Only PostgreSQL is shared between processes; SQLite's one process leads."""
        return self.db.dialect == "postgresql"

    async def stop(self) -> None:
        self._stop.set()

    async def _try_to_lead(self) -> None:
        if not self._shared:
            log.info("leadership: this process leads (SQLite is single-process)")
            await self._become(LEADER)
            return
        if self._conn is None:
            conn = await self.db.engine.connect()
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = await self._conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key})
        if got:
            await self._become(LEADER)

    async def _still_holding(self) -> None:
        if self._conn is not None:
            await self._conn.scalar(text("SELECT 1"))

    async def _become(self, role: str, *, stopping: bool = False) -> None:
        if role == self.role:
            return
        self.role = role
        self.changed.set()
        self.changed = asyncio.Event()
        if role == LEADER:
            log.info("leadership: this process is the LEADER (scheduler and Matrix sync)")
            await self._on_elected()
        else:
            if stopping:
                log.info("leadership: stopping; another process may lead now")
            else:
                log.info("leadership: this process is a FOLLOWER (Slack requests and outbox)")
            await self._on_deposed()

    async def _step_down(self, *, stopping: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                if self.is_leader:
                    await conn.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            with contextlib.suppress(Exception):
                await conn.close()
        if self.is_leader:
            await self._become(FOLLOWER, stopping=stopping)
