"""``fusionbot audit verify`` against whatever database the settings name: opened
read-only, never created or migrated, and a plain reason when it can't be verified."""

from __future__ import annotations

from contextlib import AsyncExitStack

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bot.audit import VerifyReport
from storage.audit_repo import verify_audit
from storage.db import Database, NoDatabase
from storage.schema import Schema, inspect_schema

# As the CLI's other commands: 2 when the command can't run as configured, 1 when it ran
# and found the log broken.
CONFIG_ERROR = 2
BROKEN = 1

_AUDIT_TABLES = ("audit_log", "audit_head")
_RECORD_TABLES = ("tips", "alerts")


class CannotVerify(Exception):
    def __init__(self, reason: str, *, exit_code: int) -> None:
        self.reason = reason
        self.exit_code = exit_code
        super().__init__(reason)


async def verify_database(url: str) -> VerifyReport:
    try:
        database = Database(url, read_only=True)
    except NoDatabase as exc:
        raise CannotVerify(
            f"no fusionbot database at {exc.path}; run `fusionbot db upgrade` to create one",
            exit_code=CONFIG_ERROR,
        ) from None
    try:
        async with AsyncExitStack() as stack:
            try:
                conn = await stack.enter_async_context(database.read())
                schema = await inspect_schema(conn, (*_AUDIT_TABLES, *_RECORD_TABLES))
            except (DBAPIError, OSError) as exc:
                # Not there (PostgreSQL), unreachable, or not a database at all.
                reason = exc.orig if isinstance(exc, DBAPIError) else exc
                where = make_url(url).render_as_string(hide_password=True)
                raise CannotVerify(
                    f"can't read the database at {where} ({reason}); check"
                    " FUSIONBOT_DATABASE_URL or FUSIONBOT_DATA_DIR",
                    exit_code=CONFIG_ERROR,
                ) from None
            _check_schema(schema)
            return await verify_audit(conn)
    finally:
        await database.dispose()


def _check_schema(schema: Schema) -> None:
    if not schema.known:
        raise CannotVerify(
            f"the database's schema (revision {schema.revision}) is newer than this"
            " fusionbot's: verify it with the version that migrated it",
            exit_code=CONFIG_ERROR,
        )
    if not schema.current:
        at = "it has no schema yet" if schema.revision is None else f"it is at {schema.revision}"
        raise CannotVerify(
            "the database is not migrated to the current schema (run `fusionbot db upgrade`):"
            f" {at}, this fusionbot needs {schema.newest}",
            exit_code=CONFIG_ERROR,
        )
    audit_missing = [t for t in schema.missing if t in _AUDIT_TABLES]
    if audit_missing:
        raise CannotVerify(
            f"{_tables(audit_missing, 'audit')}: the log has been destroyed", exit_code=BROKEN
        )
    if schema.missing:
        raise CannotVerify(
            f"{_tables(schema.missing, 'records')}: they were dropped, so the log can't be"
            " checked against them",
            exit_code=BROKEN,
        )


def _tables(names: list[str], kind: str) -> str:
    if len(names) == 1:
        return f"the {kind} table {names[0]} is missing"
    return f"the {kind} tables {' and '.join(names)} are missing"
