"""Shared fixtures. The suite runs on SQLite always, and on PostgreSQL when
FUSIONBOT_TEST_DATABASE_URL is set (CI sets it); otherwise those runs skip, saying why."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage.db import Database

PG_URL = os.environ.get("FUSIONBOT_TEST_DATABASE_URL", "")
PG_SKIP_REASON = (
    "PostgreSQL not configured: set FUSIONBOT_TEST_DATABASE_URL="
    "postgresql+asyncpg://postgres@127.0.0.1:5432/test to run these (CI does)"
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    backends = ["sqlite"] + (["postgresql"] if PG_URL else [])
    lines = [f"fusionbot database backends: {', '.join(backends)}"]
    if not PG_URL:
        lines.append(f"fusionbot: PostgreSQL tests skip: {PG_SKIP_REASON}")
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ran = "sqlite and postgresql" if PG_URL else "sqlite only"
    terminalreporter.write_line(f"fusionbot: database tests ran on {ran}.")
    if not PG_URL:
        skipped = [
            r
            for r in terminalreporter.stats.get("skipped", [])
            if PG_SKIP_REASON in str(r.longrepr)
        ]
        terminalreporter.write_line(
            f"fusionbot: {len(skipped)} PostgreSQL runs skipped: {PG_SKIP_REASON}"
        )


async def reset_postgres(url: str) -> None:
    """Each test starts on an empty schema."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def _create_or_drop(server_url: str, statement: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def private_postgres_url() -> Iterator[str]:
    """A database of this test run's own on the configured server, so that two runs
    (a developer's and CI's, or parallel helpers) never drop each other's tables.
    Dropped at the end; ``WITH (FORCE)`` ends connections a killed bot process left."""
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    name = f"fusionbot_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    server = PG_URL
    asyncio.run(_create_or_drop(server, f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_create_or_drop(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fusionbot.db'}"
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    return request.getfixturevalue("private_postgres_url")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database on each backend."""
    if database_url.startswith("postgresql"):
        await reset_postgres(database_url)
    database = Database(database_url)
    await database.upgrade()
    yield database
    await database.dispose()
