"""SQLite connections for SQLAlchemy's aiosqlite dialect that run each statement on the
event loop's own thread, going to aiosqlite's thread only to wait for a lock.

aiosqlite runs every sqlite3 call on a thread of its own and hands the result back to the
event loop, and SQLAlchemy's adapter makes four such calls per statement (open a cursor,
execute, fetch all rows, close). Each trip waits for the other thread to be scheduled and
for the loop to come round again: under load those waits, not SQLite, were most of what a
filed tip spent (35 trips per tip). A statement on a local SQLite file takes
microseconds, so here it runs where it is asked for, executed, fetched (up to
``PREFETCH`` rows; a larger result stays open and is fetched in further calls, so
streaming still streams) and closed in one call, after which the loop's other tasks get
their turn, as the trip to the thread gave them (a purge of thousands of rows doesn't hold
up acks meanwhile; tested). The one thing that can take long is
waiting for another process's write lock (a CLI command, say): the connection's own busy
timeout is 0, and a call that meets the lock is handed to aiosqlite's thread, which waits
for it (up to ``LOCK_WAIT``) while the loop goes on serving everything else. Commits are
the same calls (with ``synchronous=FULL`` a commit's fsync, well under a millisecond here,
is the longest a call holds the loop).

Errors are raised from ``execute`` exactly as before (SQLAlchemy wraps them the same way).
A connection is used by one task at a time (SQLAlchemy's pool), and its sqlite3 calls run
one at a time, on the loop's thread or, while waiting for a lock, on its own; sqlite3 is
told so (``check_same_thread=False``, which SQLAlchemy's dialect passes anyway)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.engine import URL

# Rows fetched with the statement itself; a larger result is fetched in further calls.
PREFETCH = 1000
# How long a statement waits for another process's write lock before failing.
LOCK_WAIT = 30.0

Row = Any
_Outcome = tuple["sqlite3.Cursor | None", Any, int, "int | None", list[Row]]


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, handing out :class:`InlineCursor`, and running each call
    on the event loop's own thread unless it would have to wait for a lock."""

    def cursor(self) -> InlineCursor:  # type: ignore[override]
        return InlineCursor(self)

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        call = partial(fn, *args, **kwargs)
        try:
            result = call()  # SQLite answers in microseconds: no trip, no wait for the loop
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
        else:
            # Still a turn for the loop's other tasks after every call, as a trip to the
            # thread gave them: a long run of statements (a fan-out's claims, a purge) must
            # not hold up acks, sends and the rest until it ends.
            await asyncio.sleep(0)
            return result
        # Another process holds the write lock (a CLI command, say): wait for it on the
        # connection's thread, so the loop goes on serving everything else meanwhile.
        return await super()._execute(_waiting_for_the_lock, call)


class InlineCursor:
    """The subset of aiosqlite's cursor that SQLAlchemy's adapter uses."""

    def __init__(self, connection: InlineConnection) -> None:
        self._connection = connection
        self._open: sqlite3.Cursor | None = None  # only while rows are left to fetch
        self._rows: deque[Row] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        return await self._run(partial(_execute, "execute", sql, parameters))

    async def executemany(self, sql: str, parameters: Any) -> InlineCursor:
        return await self._run(partial(_execute, "executemany", sql, parameters))

    async def _run(self, statement: Callable[[sqlite3.Connection], _Outcome]) -> InlineCursor:
        leftover, self._open = self._open, None
        self._rows.clear()
        connection = self._connection

        def run() -> _Outcome:  # on the connection's thread
            if leftover is not None:  # a result left half read
                leftover.close()
            return statement(connection._conn)

        outcome = await connection._execute(run)
        self._open, self.description, self.rowcount, self.lastrowid, rows = outcome
        self._rows.extend(rows)
        return self

    async def fetchone(self) -> Row | None:
        await self._fill(1)
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        size = size or self.arraysize
        await self._fill(size)
        return [self._rows.popleft() for _ in range(min(size, len(self._rows)))]

    async def fetchall(self) -> list[Row]:
        if self._open is not None:
            cursor, self._open = self._open, None
            self._rows.extend(await self._connection._execute(_fetch_rest, cursor))
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()
        if self._open is not None:
            cursor, self._open = self._open, None
            await self._connection._execute(cursor.close)

    async def _fill(self, wanted: int) -> None:
        if len(self._rows) >= wanted or self._open is None:
            return
        more = await self._connection._execute(self._open.fetchmany, max(wanted, PREFETCH))
        self._rows.extend(more)
        if len(more) < max(wanted, PREFETCH):
            cursor, self._open = self._open, None
            await self._connection._execute(cursor.close)


def _execute(method: str, sql: str, parameters: Any, connection: sqlite3.Connection) -> _Outcome:
    cursor = connection.cursor()
    try:
        getattr(cursor, method)(sql, parameters)
        rows = cursor.fetchmany(PREFETCH) if cursor.description else []
    except BaseException:
        cursor.close()
        raise
    description, rowcount, lastrowid = cursor.description, cursor.rowcount, cursor.lastrowid
    if len(rows) < PREFETCH:
        cursor.close()
        return None, description, rowcount, lastrowid, rows
    return cursor, description, rowcount, lastrowid, rows


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    )


def _waiting_for_the_lock(call: Callable[[], Any]) -> Any:
    """Try again until the lock is free or ``LOCK_WAIT`` has passed (what SQLite's busy
    timeout would do; the connection's own is 0, so calls on the loop never wait)."""
    deadline = time.monotonic() + LOCK_WAIT
    pause = 0.001
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _fetch_rest(cursor: sqlite3.Cursor) -> list[Row]:
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def async_creator(url: URL, dialect: Any) -> Callable[[], Any]:
    """For ``create_async_engine(async_creator=…)``: connects with exactly the arguments
    SQLAlchemy's aiosqlite dialect would pass (``dialect.create_connect_args``)."""
    args, kwargs = dialect.create_connect_args(url)
    kwargs["timeout"] = 0  # never wait on the loop's thread (see _waiting_for_the_lock)

    async def connect() -> InlineConnection:
        connection = InlineConnection(partial(sqlite3.connect, *args, **kwargs), 64)
        return await connection

    return connect
