"""SQLite connections for SQLAlchemy's aiosqlite dialect that take one trip to the
connection's thread per statement instead of four.

aiosqlite runs each sqlite3 call on a thread of its own and hands the result back to the
event loop. SQLAlchemy's adapter makes four such calls per statement (open a cursor,
execute, fetch all rows, close), and each waits for the loop to come round again; under
load those waits, not SQLite, are what a filed tip spends most of its time on. Here a
statement is executed, its rows fetched (up to ``PREFETCH``; a larger result stays open
and is fetched in further trips, so streaming still streams) and its cursor closed in one
call on that thread. Commits, rollbacks and connection set-up are aiosqlite's own.

Only the cursor differs: errors are raised from ``execute`` exactly as before (SQLAlchemy
wraps them the same way), and no sqlite3 object is touched outside the connection's
thread."""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.engine import URL

# Rows fetched with the statement itself; results up to this size need no further trip.
PREFETCH = 1000

Row = Any
_Outcome = tuple["sqlite3.Cursor | None", Any, int, "int | None", list[Row]]


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection, handing out :class:`OneTripCursor`."""

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)


class OneTripCursor:
    """The subset of aiosqlite's cursor that SQLAlchemy's adapter uses."""

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self._open: sqlite3.Cursor | None = None  # only while rows are left to fetch
        self._rows: deque[Row] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> OneTripCursor:
        return await self._run(partial(_execute, "execute", sql, parameters))

    async def executemany(self, sql: str, parameters: Any) -> OneTripCursor:
        return await self._run(partial(_execute, "executemany", sql, parameters))

    async def _run(self, statement: Callable[[sqlite3.Connection], _Outcome]) -> OneTripCursor:
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


def _fetch_rest(cursor: sqlite3.Cursor) -> list[Row]:
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def async_creator(url: URL, dialect: Any) -> Callable[[], Any]:
    """For ``create_async_engine(async_creator=…)``: connects with exactly the arguments
    SQLAlchemy's aiosqlite dialect would pass (``dialect.create_connect_args``)."""
    args, kwargs = dialect.create_connect_args(url)

    async def connect() -> OneTripConnection:
        connection = OneTripConnection(partial(sqlite3.connect, *args, **kwargs), 64)
        return await connection

    return connect
