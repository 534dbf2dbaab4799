"""The audit log: appended rows verify, and any edit, deletion or reordering is reported
with the row it concerns — on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from bot.audit import (
    GENESIS,
    AuditEntry,
    document_around_chain,
    entry_hash,
    normalize_details,
    verify_chain,
)
from storage import audit_repo
from storage.audit_repo import AuditHeadMissing, append_audit, load_audit, verify_audit
from storage.db import Database
from storage.tables import audit_log, tips

T0 = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


class Boom(Exception):
    pass


def names_row(problems: list[str], row: int) -> bool:
    return any(re.search(rf"\brows? {row}\b", p) for p in problems)


async def append_rows(db: Database, count: int, *, start: int = 0) -> list[AuditEntry]:
    """Appends ``count`` entries, a transaction each; returns them as the log holds them."""
    for i in range(start, start + count):
        async with db.transaction() as conn:
            await append_audit(
                conn,
                at=T0 + timedelta(minutes=i),
                actor="slack:U024BE7LH",
                action="claimed",
                subject=f"tip:{i + 1}",
                details={"n": i, "note": "ok"},
            )
    async with db.read() as conn:
        log = await load_audit(conn)
    return log[len(log) - count :]


async def verify(db: Database) -> tuple[bool, int, list[str]]:
    async with db.read() as conn:
        report = await verify_audit(conn)
    return report.ok, report.checked, report.problems


async def sql(db: Database, statement: str, **params: object) -> None:
    async with db.transaction() as conn:
        await conn.execute(text(statement), params)


# --- on both databases ---------------------------------------------------------------


async def test_appended_rows_form_a_chain_that_verifies(db: Database) -> None:
    assert await verify(db) == (True, 0, [])

    entries = await append_rows(db, 5)

    assert [e.id for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in pairwise(entries))
    assert await verify(db) == (True, 5, [])


async def test_a_row_reloads_exactly_as_appended_and_rehashes_the_same(db: Database) -> None:
    # A zone other than UTC, microseconds, nesting, non-ASCII text, a float, a tuple and a
    # non-string key: everything a JSON column or a timestamp column might change.
    at = datetime(2024, 7, 4, 23, 59, 59, 999999, tzinfo=ZoneInfo("America/New_York"))
    details = {
        "reason": "Überwachung — 監視",
        "tlp": {"level": "AMBER+STRICT", "caveats": ("LES", "CUI")},
        "score": 0.1,
        "big": 2**60,
        7: None,
        "flag": True,
    }
    async with db.transaction() as conn:
        await append_audit(
            conn,
            at=at,
            actor="matrix:@ana:example.org",
            action="approved",
            subject="tip:42",
            details=details,
        )

    async with db.read() as conn:
        [loaded] = await load_audit(conn)

    assert (loaded.id, loaded.prev_hash) == (1, GENESIS)
    assert (loaded.actor, loaded.action, loaded.subject) == (
        "matrix:@ana:example.org",
        "approved",
        "tip:42",
    )
    assert loaded.at == at and loaded.at.tzinfo == UTC
    assert loaded.details == normalize_details(details)
    assert loaded.details["tlp"]["caveats"] == ["LES", "CUI"]
    assert loaded.details["7"] is None
    assert loaded.hash == entry_hash(
        loaded.id,
        loaded.at,
        loaded.actor,
        loaded.action,
        loaded.subject,
        loaded.details,
        loaded.prev_hash,
    )
    assert (await verify(db))[0]


async def test_editing_a_rows_details_is_reported_for_that_row(db: Database) -> None:
    await append_rows(db, 5)

    await sql(db, """UPDATE audit_log SET details = '{"n": 2, "note": "nothing"}' WHERE id = 3""")

    ok, checked, problems = await verify(db)
    assert not ok and checked == 5
    assert len(problems) == 1
    assert names_row(problems, 3) and "edited" in problems[0]


async def test_deleting_a_middle_row_is_reported(db: Database) -> None:
    await append_rows(db, 5)

    await sql(db, "DELETE FROM audit_log WHERE id = 3")

    ok, checked, problems = await verify(db)
    assert not ok and checked == 4
    assert names_row(problems, 3) and "missing" in problems[0]


async def test_deleting_the_last_row_is_reported_although_the_chain_still_links(
    db: Database,
) -> None:
    await append_rows(db, 5)

    await sql(db, "DELETE FROM audit_log WHERE id = 5")

    ok, _, problems = await verify(db)
    assert not ok
    assert len(problems) == 1
    assert names_row(problems, 5) and "cut off" in problems[0]


async def test_rewriting_a_row_with_its_own_hash_recomputed_breaks_the_next_link(
    db: Database,
) -> None:
    entries = await append_rows(db, 5)
    forged = replace(entries[2], details={"n": 2, "note": "forged"})
    forged_hash = entry_hash(
        forged.id,
        forged.at,
        forged.actor,
        forged.action,
        forged.subject,
        forged.details,
        forged.prev_hash,
    )

    await sql(
        db,
        """UPDATE audit_log SET details = '{"n": 2, "note": "forged"}', hash = :h
        WHERE id = 3""",
        h=forged_hash,
    )

    ok, _, problems = await verify(db)
    assert not ok
    assert len(problems) == 1
    assert names_row(problems, 4) and "does not follow row 3" in problems[0]


async def test_forging_the_last_row_and_its_hash_is_caught_by_the_head(db: Database) -> None:
    entries = await append_rows(db, 3)
    forged = replace(entries[2], actor="slack:UOTHER")
    forged_hash = entry_hash(
        forged.id,
        forged.at,
        forged.actor,
        forged.action,
        forged.subject,
        forged.details,
        forged.prev_hash,
    )

    await sql(
        db, "UPDATE audit_log SET actor = 'slack:UOTHER', hash = :h WHERE id = 3", h=forged_hash
    )

    ok, _, problems = await verify(db)
    assert not ok
    assert names_row(problems, 3) and "head" in problems[0]


async def test_swapping_two_rows_is_reported_for_both(db: Database) -> None:
    await append_rows(db, 5)

    # Through a free id: PostgreSQL checks the primary key row by row.
    await sql(db, "UPDATE audit_log SET id = 1000 WHERE id = 2")
    await sql(db, "UPDATE audit_log SET id = 2 WHERE id = 3")
    await sql(db, "UPDATE audit_log SET id = 3 WHERE id = 1000")

    ok, checked, problems = await verify(db)
    assert not ok and checked == 5
    assert names_row(problems, 2) and names_row(problems, 3)


async def test_a_rolled_back_transaction_leaves_no_audit_row(db: Database) -> None:
    await append_rows(db, 2)

    with pytest.raises(Boom):
        async with db.transaction() as conn:
            await append_audit(conn, at=T0, actor="slack:U1", action="approved", subject="tip:9")
            raise Boom

    async with db.read() as conn:
        assert [e.id for e in await load_audit(conn)] == [1, 2]
    assert await verify(db) == (True, 2, [])

    [after] = await append_rows(db, 1, start=2)
    assert after.id == 3
    assert await verify(db) == (True, 3, [])


@pytest.mark.parametrize("existing", [0, 3], ids=["new log", "log with a head"])
async def test_concurrent_appenders_get_one_unbroken_chain(db: Database, existing: int) -> None:
    # A new log has no head row to lock yet (PostgreSQL takes an advisory lock then); an
    # existing one is serialised by the head row's lock.
    await append_rows(db, existing)

    async def one(i: int) -> None:
        async with db.transaction() as conn:
            await append_audit(
                conn, at=T0, actor=f"slack:U{i}", action="read-back failed", subject="tip:1"
            )
            await asyncio.sleep(0)  # let the others try to interleave

    await asyncio.gather(*(one(i) for i in range(12)))

    async with db.read() as conn:
        entries = (await load_audit(conn))[existing:]
    assert [e.id for e in entries] == list(range(existing + 1, existing + 13))
    assert sorted(e.actor for e in entries) == sorted(f"slack:U{i}" for i in range(12))
    assert await verify(db) == (True, existing + 12, [])


AWKWARD = [
    ('slack:U"quoted"', "edited", "tip:1", {"text": 'a "b" \\ c\nd\te \u2028 \u00e9 \U0001f600'}),
    (
        "matrix:@ana:example.org",
        "asked",
        "T-\u00e9\u00e8",
        {"nested": {"z": [1, 2.5, None], "a": True}},
    ),
    ("console:olly", "filed", "x\\y", {"\u0001control": "\u007f", "empty": {}}),
]


async def test_awkward_texts_append_and_verify_after_a_head_exists(db: Database) -> None:
    # On PostgreSQL an append after the first is numbered and hashed by the database from
    # the head it locks: quotes, backslashes, control characters and non-ASCII text in
    # any field must hash exactly as the verifier hashes them.
    await append_rows(db, 1)
    for actor, action, subject, details in AWKWARD:
        async with db.transaction() as conn:
            await append_audit(
                conn, at=T0, actor=actor, action=action, subject=subject, details=details
            )
    assert await verify(db) == (True, 1 + len(AWKWARD), [])
    async with db.read() as conn:
        appended = (await load_audit(conn))[1:]
    assert [e.id for e in appended] == [2, 3, 4]
    assert [(e.actor, e.action, e.subject, e.details) for e in appended] == [
        (actor, action, subject, normalize_details(details))
        for actor, action, subject, details in AWKWARD
    ]


async def test_load_filters_by_subject_and_keeps_the_newest(db: Database) -> None:
    async with db.transaction() as conn:
        for i, subject in enumerate(["tip:1", "tip:2", "tip:1", "tip:1", "tip:2"]):
            await append_audit(
                conn,
                at=T0 + timedelta(seconds=i),
                actor="slack:U1",
                action="asked",
                subject=subject,
                details={"i": i},
            )

    async with db.read() as conn:
        about_1 = await load_audit(conn, subject="tip:1")
        newest_two = await load_audit(conn, subject="tip:1", limit=2)
        everything = await load_audit(conn)

    assert [e.id for e in about_1] == [1, 3, 4]
    assert [e.id for e in newest_two] == [3, 4]
    assert [e.id for e in everything] == [1, 2, 3, 4, 5]


async def test_a_deleted_head_is_reported_and_appending_refuses_to_fork(db: Database) -> None:
    await append_rows(db, 2)
    await sql(db, "DELETE FROM audit_head")

    ok, _, problems = await verify(db)
    assert not ok and "head is missing" in problems[0]
    # SQLite refuses at the append, PostgreSQL at the commit (the chain is made then):
    # either way nothing of the action is written.
    refusal = AuditHeadMissing if db.is_sqlite else DBAPIError
    with pytest.raises(
        refusal, match="audit head is missing but the log has rows up to 2"
    ) as refused:
        async with db.transaction() as conn:
            await conn.execute(text("INSERT INTO bot_state (key, value) VALUES ('k', 'v')"))
            await append_audit(conn, at=T0, actor="slack:U1", action="approved", subject="tip:9")
    if not db.is_sqlite:
        assert getattr(refused.value.orig, "sqlstate", None) == audit_repo.HEAD_MISSING_SQLSTATE
    async with db.read() as conn:
        assert [e.id for e in await load_audit(conn)] == [1, 2]
        assert (await conn.execute(text("SELECT count(*) FROM bot_state"))).scalar() == 0


async def test_details_that_are_not_json_are_reported_as_an_edit(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("PostgreSQL's json column refuses text that is not JSON")
    await append_rows(db, 3)

    await sql(db, "UPDATE audit_log SET details = 'not json' WHERE id = 2")

    ok, checked, problems = await verify(db)
    assert not ok and checked == 3
    assert names_row(problems, 2) and "edited" in problems[0]


async def test_naive_times_are_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="aware"):
        async with db.transaction() as conn:
            await append_audit(
                conn, at=datetime(2024, 1, 1), actor="slack:U1", action="filed", subject="tip:1"
            )
    assert await verify(db) == (True, 0, [])


# --- the chain alone, without a database ---------------------------------------------


def chain(count: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS
    for i in range(1, count + 1):
        at = T0 + timedelta(seconds=i)
        h = entry_hash(i, at, "console:#review", "filed", f"tip:{i}", {}, prev)
        entries.append(AuditEntry(i, at, "console:#review", "filed", f"tip:{i}", {}, prev, h))
        prev = h
    return entries


def test_the_hash_covers_every_field_and_not_the_zone_object() -> None:
    base = ("console:#review", "filed", "tip:1", {"a": [1, 2]}, GENESIS)
    h = entry_hash(1, T0, *base)

    assert h == entry_hash(1, T0.astimezone(ZoneInfo("Asia/Tokyo")), *base)
    assert h == entry_hash(1, T0, "console:#review", "filed", "tip:1", {"a": [1, 2]}, GENESIS)
    assert (
        len(
            {
                h,
                entry_hash(2, T0, *base),
                entry_hash(1, T0 + timedelta(microseconds=1), *base),
                entry_hash(1, T0, "console:#other", "filed", "tip:1", {"a": [1, 2]}, GENESIS),
                entry_hash(1, T0, "console:#review", "purged", "tip:1", {"a": [1, 2]}, GENESIS),
                entry_hash(1, T0, "console:#review", "filed", "tip:2", {"a": [1, 2]}, GENESIS),
                entry_hash(1, T0, "console:#review", "filed", "tip:1", {"a": [2, 1]}, GENESIS),
                entry_hash(1, T0, "console:#review", "filed", "tip:1", {"a": [1, 2]}, "1" * 64),
            }
        )
        == 8
    )


@pytest.mark.parametrize(("actor", "action", "subject", "details"), AWKWARD)
def test_the_form_around_the_chain_fields_is_the_hashed_form(
    actor: str, action: str, subject: str, details: dict[str, object]
) -> None:
    import hashlib
    import json

    start, end = document_around_chain(T0, actor, action, subject, details)
    prev = "ab" * 32
    document = start + "17" + ',"prev_hash":' + json.dumps(prev) + end
    digest = hashlib.sha256(document.encode("utf-8")).hexdigest()
    assert digest == entry_hash(17, T0, actor, action, subject, details, prev)


def test_a_chain_verifies_against_its_head() -> None:
    entries = chain(4)
    report = verify_chain(entries, (4, entries[-1].hash))
    assert report.ok and report.checked == 4 and report.problems == []
    assert verify_chain([], None).ok


def test_reordered_rows_are_reported() -> None:
    e = chain(5)

    report = verify_chain([e[0], e[1], e[3], e[2], e[4]], (5, e[4].hash))

    assert not report.ok
    assert any("row 3 appears after row 4" in p and "reordered" in p for p in report.problems)


def test_a_head_that_disagrees_with_the_log_is_reported() -> None:
    e = chain(3)

    cut = verify_chain(e, (5, "f" * 64))
    extra = verify_chain(e, (2, e[1].hash))
    emptied = verify_chain([], (3, e[2].hash))

    assert names_row(cut.problems, 4) and "cut off" in cut.problems[0]
    assert names_row(extra.problems, 3) and "outside the audit log" in extra.problems[0]
    assert "is empty" in emptied.problems[0] and names_row(emptied.problems, 1)


def test_removing_the_first_rows_and_renumbering_is_reported() -> None:
    e = chain(3)
    renumbered = [
        replace(
            entry,
            id=entry.id - 1,
            hash=entry_hash(
                entry.id - 1,
                entry.at,
                entry.actor,
                entry.action,
                entry.subject,
                entry.details,
                entry.prev_hash,
            ),
        )
        for entry in e[1:]
    ]

    report = verify_chain(renumbered, (2, renumbered[-1].hash))

    assert not report.ok
    assert names_row(report.problems, 1) and "genesis" in report.problems[0]


async def test_verification_streams_across_batches(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_repo, "_VERIFY_BATCH", 2)
    await append_rows(db, 7)
    assert await verify(db) == (True, 7, [])

    await sql(db, "DELETE FROM audit_log WHERE id = 6")

    ok, checked, problems = await verify(db)
    assert not ok and checked == 6 and names_row(problems, 6)


# --- the records against the log ------------------------------------------------------


async def filed_history(path: Path, tips_filed: int) -> Database:
    """An SQLite database whose tips each have the entries a worked tip has (not chained:
    the plan, not the chain, is under test)."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.upgrade()
    actions = ("tip.filed", "tip.claimed", "tip.approved")
    async with db.transaction() as conn:
        await conn.execute(
            tips.insert(),
            [
                {
                    "id": n,
                    "summary": f"Van at the depot {n}",
                    "category": "PHOTO",
                    "urgency": "routine",
                    "state": "approved",
                    "officer": "console:olly",
                    "intake_channel": "console:#tips",
                    "filed_at": T0,
                    "updated_at": T0,
                    "version": 1,
                }
                for n in range(1, tips_filed + 1)
            ],
        )
        await conn.execute(
            audit_log.insert(),
            [
                {
                    "id": 3 * (n - 1) + i + 1,
                    "at": T0,
                    "actor": "console:ana",
                    "action": action,
                    "subject": f"T-{n}",
                    "details": {},
                    "prev_hash": GENESIS,
                    "hash": GENESIS,
                }
                for n in range(1, tips_filed + 1)
                for i, action in enumerate(actions)
            ],
        )
    return db


@pytest.mark.parametrize("statistics", [False, True], ids=["no statistics", "statistics"])
async def test_records_are_checked_against_the_log_in_one_pass_not_one_scan_each(
    tmp_path: Path, statistics: bool
) -> None:
    """100,000 tips must not mean 100,000 scans of the log (minutes, where a pass takes
    0.16 s): SQLite has to look the entries up, with statistics or without."""
    path = tmp_path / "history.db"
    db = await filed_history(path, 3000)
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "LEFT OUTER JOIN audit_log AS" in statement:  # not the chain's read
            seen.append((statement, params))

    try:
        if statistics:
            async with db.transaction() as conn:
                await conn.exec_driver_sql("ANALYZE")
        event.listen(db.engine.sync_engine, "before_cursor_execute", record)
        async with db.read() as conn:
            report = await verify_audit(conn)
    finally:
        await db.dispose()
    assert report.records == {"tip": 3000, "alert": 0}
    explain = sqlite3.connect(path)
    try:
        plans = [
            " | ".join(row[3] for row in explain.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in seen
        ]
    finally:
        explain.close()
    assert len(plans) == 2, plans  # tips and alerts: one statement each
    for plan in plans:
        assert "CORRELATED" not in plan and "SEARCH" in plan, plans
