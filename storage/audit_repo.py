"""Appending to, reading and verifying the hash-chained audit log."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.audit import (
    ALERTS,
    GENESIS,
    TIPS,
    AuditEntry,
    ChainChecker,
    RecordKind,
    VerifyReport,
    canonical_time,
    document_around_chain,
    entry_hash,
    missing_entries_problem,
    normalize_details,
)
from storage.tables import alerts, audit_head, audit_log, audit_pending, tips

_HEAD_ID = 1
_VERIFY_BATCH = 500

# SQLSTATE with which PostgreSQL refuses a commit whose audit entry would fork the chain
# (migration 0007's trigger; the head is missing but the log has rows).
HEAD_MISSING_SQLSTATE = "FB001"


# Built once: every audited action runs these, and building a statement costs about as
# much CPU as executing it.
_READ_HEAD = select(audit_head.c.last_id, audit_head.c.last_hash).where(audit_head.c.id == _HEAD_ID)
_INSERT_ENTRY = audit_log.insert()
_MOVE_HEAD = (
    audit_head.update()
    .where(audit_head.c.id == _HEAD_ID)
    .values(last_id=bindparam("new_last_id"), last_hash=bindparam("new_last_hash"))
)
# PostgreSQL: the entry waits in audit_pending, unlocked, and is chained into audit_log
# during the commit by migration 0007's deferred trigger, so the chain's head is locked
# only inside the server, for the commit (locked from the append to the commit, it
# serialised every audited action through its last round trips: benchmarks/audit_chain
# measured a p95 1.8-2.4x a plain log table's, ten actions at once). The database numbers
# the row and hashes the canonical form entry_hash() hashes with the id and the previous
# hash filled in (to_json quotes the hash as Python's json does): SHA-256 in hex.
_QUEUE_PG = audit_pending.insert()


def _without_entry(table: Table, kind: RecordKind) -> Select[tuple[int]]:
    """The ids of ``table``'s records whose creating entry is not in the log: one
    anti-join for them all. (As a correlated NOT EXISTS, SQLite scanned the whole log once
    per record: minutes for 100,000 tips; joined, SQLite indexes the log's entries of that
    action on the fly and PostgreSQL hashes them: 0.16 s and 0.07-0.22 s for 100,000 tips
    and 300,000 entries. tests/test_audit.py keeps SQLite's plan.)"""
    entry = audit_log.alias(f"{kind.noun}_entry")
    ref = literal(kind.ref_prefix, String) + cast(table.c.id, String)
    return (
        select(table.c.id)
        .select_from(
            table.outerjoin(entry, and_(entry.c.action == kind.action, entry.c.subject == ref))
        )
        .where(entry.c.id.is_(None))
        .order_by(table.c.id)
    )


_RECORDS = ((TIPS, tips), (ALERTS, alerts))
_COUNT_RECORDS = select(
    *(select(func.count()).select_from(table).scalar_subquery() for _, table in _RECORDS)
)
_WITHOUT_ENTRY = [(kind, _without_entry(table, kind)) for kind, table in _RECORDS]


class AuditHeadMissing(RuntimeError):
    """The log has rows but no head: appending would fork the chain, so it is refused.
    (On PostgreSQL the refusal is the commit's: a DBAPIError with HEAD_MISSING_SQLSTATE.)"""


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
) -> None:
    """Append one entry inside the caller's transaction, so that it exists exactly when
    the action it records was committed. Its place in the chain is known once that
    commit is (on PostgreSQL it is chained during the commit): read it back with
    :func:`load_audit`."""
    canonical_time(at)  # refuse a naive time before anything is written
    # Stored and reloaded as UTC, and hashed as such.
    at = at.astimezone(UTC)
    normal = normalize_details(details)
    if conn.dialect.name == "postgresql":
        start, end = document_around_chain(at, actor, action, subject, normal)
        await conn.execute(
            _QUEUE_PG,
            {
                "at": at,
                "actor": actor,
                "action": action,
                "subject": subject,
                "details": normal,
                "document_start": start,
                "document_end": end,
            },
        )
        return
    # SQLite: Database.transaction() lets one writer in at a time, so the head read here
    # is still the head at the commit.
    head = (await conn.execute(_READ_HEAD)).first()
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
    new_hash = entry_hash(entry_id, at, actor, action, subject, normal, last_hash)
    await conn.execute(
        _INSERT_ENTRY,
        {
            "id": entry_id,
            "at": at,
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": normal,
            "prev_hash": last_hash,
            "hash": new_hash,
        },
    )
    if head is None:
        await conn.execute(
            audit_head.insert().values(id=_HEAD_ID, last_id=entry_id, last_hash=new_hash)
        )
    else:
        await conn.execute(_MOVE_HEAD, {"new_last_id": entry_id, "new_last_hash": new_hash})


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
    """Check the whole chain and the head, streaming rows in id order, then that every
    tip and alert has the entry that created it (a log cut off together with its head, or
    emptied, still links)."""
    return await _check_records(conn, await _verify_chain(conn))


async def _check_records(conn: AsyncConnection, report: VerifyReport) -> VerifyReport:
    # Each query is one snapshot, and a record commits with its entry, so a tip filed
    # while the chain was read is seen with its entry or not at all: never a false alarm.
    # Purged tips keep their row and their entries (bot/retention.py): they are checked too.
    counts = (await conn.execute(_COUNT_RECORDS)).one()
    problems = list(report.problems)
    for kind, query in _WITHOUT_ENTRY:
        missing = list((await conn.execute(query)).scalars())
        problem = missing_entries_problem(kind, missing)
        if problem is not None:
            problems.append(problem)
    return VerifyReport(
        ok=not problems,
        checked=report.checked,
        problems=problems,
        records={kind.noun: count for (kind, _), count in zip(_RECORDS, counts, strict=True)},
    )


async def _verify_chain(conn: AsyncConnection) -> VerifyReport:
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
