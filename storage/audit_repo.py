"""Appending to, reading and verifying the hash-chained audit log."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, func, literal, select, text, true
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.audit import (
    GENESIS,
    AuditEntry,
    ChainChecker,
    VerifyReport,
    canonical_time,
    document_around_chain,
    entry_hash,
    normalize_details,
)
from storage.tables import audit_head, audit_log

# Key of the PostgreSQL advisory lock that serialises appenders: b"fbaudit1" as a bigint.
# Any fixed value works as long as nothing else in the database uses it.
AUDIT_LOCK_KEY = 0x6662_6175_6469_7431

_HEAD_ID = 1
_VERIFY_BATCH = 500


# Built once: every audited action runs these, and building a statement costs about as
# much CPU as executing it.
_READ_HEAD = select(audit_head.c.last_id, audit_head.c.last_hash).where(audit_head.c.id == _HEAD_ID)
_LOCK_HEAD = _READ_HEAD.with_for_update()
_INSERT_ENTRY = audit_log.insert()
_MOVE_HEAD = (
    audit_head.update()
    .where(audit_head.c.id == _HEAD_ID)
    .values(last_id=bindparam("new_last_id"), last_hash=bindparam("new_last_hash"))
)
# PostgreSQL: the whole append in one statement, so that the head's row lock, which
# serialises every audited action, is held for this statement and the commit only (it
# was four round trips: lock and read the head, insert, move the head, commit). The
# database numbers and hashes the row from the head it locked: the canonical form
# entry_hash() hashes, with the id and the previous hash filled in (to_json quotes the
# hash as Python's json does), SHA-256 in hex. append_audit checks the hash against
# entry_hash() before the commit, so a row whose hash the verifier would reject is never
# committed. No row comes back when there is no head yet: the caller starts the log.
_APPEND_PG = text(
    """
    WITH head AS (
        SELECT last_id + 1 AS id, last_hash AS prev_hash
        FROM audit_head WHERE id = :head_id FOR UPDATE
    ), entry AS (
        SELECT id, prev_hash, encode(sha256(convert_to(
            :document_start || id::text || ',"prev_hash":' || to_json(prev_hash)::text
            || :document_end, 'UTF8')), 'hex') AS hash
        FROM head
    ), appended AS (
        INSERT INTO audit_log (id, at, actor, action, subject, details, prev_hash, hash)
        SELECT id, :at, :actor, :action, :subject, :details, prev_hash, hash FROM entry
        RETURNING id, prev_hash, hash
    )
    UPDATE audit_head SET last_id = appended.id, last_hash = appended.hash
    FROM appended WHERE audit_head.id = :head_id
    RETURNING appended.id, appended.prev_hash, appended.hash
    """
).bindparams(
    bindparam("head_id", type_=audit_head.c.id.type),
    bindparam("document_start", type_=Text()),
    bindparam("document_end", type_=Text()),
    bindparam("at", type_=audit_log.c.at.type),
    bindparam("actor", type_=audit_log.c.actor.type),
    bindparam("action", type_=audit_log.c.action.type),
    bindparam("subject", type_=audit_log.c.subject.type),
    bindparam("details", type_=audit_log.c.details.type),
)


class AuditHeadMissing(RuntimeError):
    """The log has rows but no head: appending would fork the chain, so it is refused."""


def _entry(r: Any, details: dict[str, Any] | None = None) -> AuditEntry:
    return AuditEntry(
        id=r.id,
        at=r.at,
        actor=r.actor,
        action=r.action,
        subject=r.subject,
        details=r.details if details is None else details,
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


async def append_audit(
    conn: AsyncConnection,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one row inside the caller's transaction, so that the row exists exactly
    when the action it records was committed."""
    canonical_time(at)  # refuse a naive time before taking the lock
    # Stored and reloaded as UTC; return the same, so the entry equals its reloaded self.
    at = at.astimezone(UTC)
    normal = normalize_details(details)
    if conn.dialect.name == "postgresql":
        appended = await _append_pg(conn, at, actor, action, subject, normal)
        if appended is not None:
            return appended
        # No head row to lock yet (a new log, or a deleted head): the advisory lock
        # serialises appenders until one head exists; then read it (another appender
        # may have made it meanwhile).
        await conn.execute(select(func.pg_advisory_xact_lock(AUDIT_LOCK_KEY)))
    head = await _read_head(conn)
    if head is None:
        existing = (await conn.execute(select(func.max(audit_log.c.id)))).scalar()
        if existing is not None:
            raise AuditHeadMissing(
                f"the audit head is missing but the log has rows up to {existing}; "
                "run `fusionbot audit verify`"
            )
        last_id, last_hash = 0, GENESIS
    else:
        last_id, last_hash = head.last_id, head.last_hash

    entry_id = last_id + 1
    entry = AuditEntry(
        id=entry_id,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        details=normal,
        prev_hash=last_hash,
        hash=entry_hash(entry_id, at, actor, action, subject, normal, last_hash),
    )
    row = {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }
    await conn.execute(_INSERT_ENTRY, row)
    if head is None:
        await conn.execute(
            audit_head.insert().values(id=_HEAD_ID, last_id=entry.id, last_hash=entry.hash)
        )
    else:
        await conn.execute(_MOVE_HEAD, {"new_last_id": entry.id, "new_last_hash": entry.hash})
    return entry


async def _append_pg(
    conn: AsyncConnection,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
) -> AuditEntry | None:
    """The append as one statement (see _APPEND_PG); None when there is no head yet."""
    start, end = document_around_chain(at, actor, action, subject, details)
    row = (
        await conn.execute(
            _APPEND_PG,
            {
                "head_id": _HEAD_ID,
                "document_start": start,
                "document_end": end,
                "at": at,
                "actor": actor,
                "action": action,
                "subject": subject,
                "details": details,
            },
        )
    ).first()
    if row is None:
        return None
    expected = entry_hash(row.id, at, actor, action, subject, details, row.prev_hash)
    if row.hash != expected:  # rolls the action back: nothing unverifiable is committed
        raise RuntimeError(f"audit row {row.id}: the database hashed it differently")
    return AuditEntry(
        id=row.id,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        details=details,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


async def _read_head(conn: AsyncConnection) -> Any:
    # Two appenders must not both read the same head. On PostgreSQL the row lock makes the
    # second wait for the first's commit (or rollback) and then read the head it left; on
    # SQLite, Database.transaction() already lets only one writer in at a time.
    query = _LOCK_HEAD if conn.dialect.name == "postgresql" else _READ_HEAD
    return (await conn.execute(query)).first()


async def load_audit(
    conn: AsyncConnection, *, subject: str | None = None, limit: int | None = None
) -> list[AuditEntry]:
    """Entries in id order (oldest first), optionally only those about ``subject``.

    With ``limit``, the newest ``limit`` of them — still oldest first — since the recent
    end of a history is what someone looking it up wants to see."""
    query = select(audit_log)
    if subject is not None:
        query = query.where(audit_log.c.subject == subject)
    if limit is None:
        rows = (await conn.execute(query.order_by(audit_log.c.id))).all()
        return [_entry(r) for r in rows]
    rows = (await conn.execute(query.order_by(audit_log.c.id.desc()).limit(limit))).all()
    return [_entry(r) for r in reversed(rows)]


async def verify_audit(conn: AsyncConnection) -> VerifyReport:
    """Check the whole chain and the head, streaming rows in id order."""
    # Rows and head come from one statement, hence one snapshot: read separately, an append
    # committing in between would look like rows cut off (or added past) the end. The anchor
    # yields one row even when both tables are empty.
    anchor = select(literal(1).label("one")).subquery("anchor")
    query = (
        select(
            audit_head.c.last_id.label("head_last_id"),
            audit_head.c.last_hash.label("head_last_hash"),
            audit_log.c.id,
            audit_log.c.at,
            audit_log.c.actor,
            audit_log.c.action,
            audit_log.c.subject,
            # Read as text and parsed here: a tampered value that is not JSON becomes a
            # reported problem instead of an error that aborts the check.
            cast(audit_log.c.details, Text).label("details_text"),
            audit_log.c.prev_hash,
            audit_log.c.hash,
        )
        .select_from(
            anchor.outerjoin(audit_head, audit_head.c.id == _HEAD_ID).outerjoin(audit_log, true())
        )
        .order_by(audit_log.c.id)
        .execution_options(yield_per=_VERIFY_BATCH)
    )
    checker = ChainChecker()
    head: tuple[int, str] | None = None
    last_read = 0
    try:
        result = await conn.stream(query)
        async for r in result:
            if r.head_last_id is not None:
                head = (r.head_last_id, r.head_last_hash)
            if r.id is None:  # the log is empty
                continue
            checker.add(_entry(r, _parse_details(r.details_text)))
            last_read = r.id
    except (TypeError, ValueError) as exc:
        # SQLite keeps whatever is written into a column; a value its type cannot read
        # (e.g. a time that is not a time) stops the stream here.
        report = checker.finish(head)
        return VerifyReport(
            ok=False,
            checked=report.checked,
            problems=[
                *report.problems,
                f"the row after row {last_read} cannot be read ({exc}): it was edited",
            ],
        )
    return checker.finish(head)


def _parse_details(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw is not None else None
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    # Not a JSON object, so not what append_audit wrote: keep the raw text visible and let
    # the hash check report the row as edited.
    return {"unreadable details": raw}
