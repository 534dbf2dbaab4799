"""Engine, transactions and migrations for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from storage import sqlite_driver

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class CommitOutcomeUnknown(Exception):
    """The database connection failed during a commit: it may have been applied or not."""


class NoDatabase(Exception):
    """A database opened read-only does not exist: it would not be created."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"no database at {path}")


class Database:
    """One engine per process. Write transactions go through :meth:`transaction`."""

    def __init__(self, url: str, *, echo: bool = False, read_only: bool = False) -> None:
        """``read_only``: for a command that inspects a database (``fusionbot audit
        verify``). It changes nothing and creates nothing: an SQLite file that is not there
        raises :class:`NoDatabase` instead of being made, empty, where a mistyped data
        directory pointed."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_url = url
        if self.is_sqlite and read_only:
            connect_url = _read_only_sqlite_url(url)
        elif self.is_sqlite:
            _ensure_sqlite_dir(url)
        options = _engine_options(connect_url)
        if read_only and url.startswith("postgresql+asyncpg"):
            options["connect_args"] = {"server_settings": {"default_transaction_read_only": "on"}}
        self.engine: AsyncEngine = create_async_engine(connect_url, echo=echo, **options)
        if self.is_sqlite and not read_only:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        elif url.startswith("postgresql+asyncpg"):
            event.listen(self.engine.sync_engine, "checkout", _refuse_closed)
        # SQLite has one writer: serialise our own writers instead of meeting "database is
        # locked" errors. PostgreSQL uses row locks instead.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on success, rolled back on any exception.

        On PostgreSQL a commit whose connection failed (a server restart, a cut
        connection) may or may not have been applied: that raises
        :class:`CommitOutcomeUnknown`, so nobody is told "nothing was changed" when it was.
        SQLite is in-process: a failed commit is a commit that did not happen."""
        if self._write_lock is None:
            async with self.engine.connect() as conn:
                transaction = await conn.begin()
                try:
                    yield conn
                except BaseException:
                    await transaction.rollback()
                    raise
                try:
                    await transaction.commit()
                except exc.DBAPIError as error:
                    if _refused_at_commit(error):
                        raise  # the server answered the COMMIT: nothing was applied
                    raise CommitOutcomeUnknown(str(error)) from error
                except Exception as error:
                    raise CommitOutcomeUnknown(str(error)) from error
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def one_statement(self) -> AsyncIterator[AsyncConnection]:
        """For a write that is one statement: on PostgreSQL run in autocommit, where the
        statement is its own transaction (atomic, and committed when it returns) without
        a BEGIN and a COMMIT round trip; asyncpg's executemany is one such statement. A
        failure leaves its outcome unknown, as a failed commit would. On SQLite: a write
        transaction, as :meth:`transaction`."""
        if self._write_lock is not None:
            async with self.transaction() as conn:
                yield conn
            return
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def mid_write(self) -> bool:
        """Whether one of this process's write transactions is under way (SQLite; on
        PostgreSQL writers lock rows, not the database, so never)."""
        return self._write_lock is not None and self._write_lock.locked()

    @asynccontextmanager
    async def between_writes(self) -> AsyncIterator[None]:
        """Held while none of this process's write transactions is under way, and none
        starts. For a synchronous writer to the same SQLite file on the event loop's
        thread (APScheduler 3's job store): met with a transaction that is waiting for
        its next turn of the loop, such a writer would wait on the loop's own thread for
        a lock that can't be released meanwhile — the whole bot frozen for SQLite's
        busy timeout (5 s), then "database is locked". Nothing to wait for on
        PostgreSQL."""
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        async with self.transaction() as conn:
            await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        await self.engine.dispose()


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite+aiosqlite"):
        # One trip to aiosqlite's thread per statement instead of four (sqlite_driver).
        parsed = make_url(url)
        return {"async_creator": sqlite_driver.async_creator(parsed, parsed.get_dialect()())}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    if url.startswith("postgresql+asyncpg"):
        # No pre-ping: it cost three round trips per checkout (BEGIN, ";", ROLLBACK), more
        # than a filed tip's own statements. A connection the server ended while it sat
        # in the pool (a restart, a failover, pg_terminate_backend) is already known
        # closed to asyncpg, which reads the server's goodbye as it arrives: checked at
        # checkout by _refuse_closed, at no round trip. One ended under a statement is
        # still found by SQLAlchemy's disconnect handling, as before.
        return {"pool_size": 10, "max_overflow": 10}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}


# SQLSTATE classes of errors with which PostgreSQL refuses a COMMIT over a live connection,
# having rolled the transaction back: a deferred constraint (23), a serialisation failure
# (40), and our own deferred triggers' refusals (FB: the audit chain's, migration 0007).
# Any other failure during a commit (a cut connection, a server shutting down) leaves
# the outcome unknown.
_REFUSED_AT_COMMIT = ("23", "40", "FB")


def _refused_at_commit(error: exc.DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    return (
        not error.connection_invalidated
        and isinstance(sqlstate, str)
        and sqlstate.startswith(_REFUSED_AT_COMMIT)
    )


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled asyncpg connection the server has closed is replaced on checkout, with
    every connection pooled before it (as a failed pre-ping would): when the server ended
    one, it most likely ended them all."""
    if dbapi_connection.driver_connection.is_closed():
        raise exc.InvalidatePoolError("the server closed this pooled connection")


def sqlite_path(url: str) -> Path | None:
    """The file an SQLite URL names (None for an in-memory database or another kind)."""
    if not url.startswith("sqlite"):
        return None
    path = make_url(url).database
    return Path(path) if path and path != ":memory:" else None


def _ensure_sqlite_dir(url: str) -> None:
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _read_only_sqlite_url(url: str) -> str:
    """``url`` opened by SQLite read-only (mode=ro), which never creates the file."""
    path = sqlite_path(url)
    if path is None or not path.is_file():
        raise NoDatabase(path.absolute() if path is not None else Path(":memory:"))
    parsed = make_url(url)
    # A URI filename: the path percent-encoded, the mode in its query.
    return parsed.set(
        database=path.resolve().as_uri(), query={**parsed.query, "mode": "ro", "uri": "true"}
    ).render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
