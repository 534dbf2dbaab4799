"""Which schema a database holds, for a command that reads one without migrating it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import alembic_config


@dataclass(frozen=True)
class Schema:
    revision: str | None  # None: never migrated
    newest: str  # the revision this code migrates to
    known: bool  # whether this code knows ``revision`` (a newer one's migrations, it doesn't)
    missing: list[str]  # of the tables asked about, those the database lacks

    @property
    def current(self) -> bool:
        return self.revision == self.newest


async def inspect_schema(conn: AsyncConnection, tables: Iterable[str]) -> Schema:
    wanted = list(tables)

    def look(sync: Connection) -> tuple[str | None, set[str]]:
        revision = MigrationContext.configure(sync).get_current_revision()
        return revision, set(inspect(sync).get_table_names())

    revision, present = await conn.run_sync(look)
    scripts = ScriptDirectory.from_config(alembic_config())
    return Schema(
        revision=revision,
        newest=scripts.get_current_head() or "",
        known=revision is None or _knows(scripts, revision),
        missing=[name for name in wanted if name not in present],
    )


def _knows(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False
