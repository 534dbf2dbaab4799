"""Loading and saving tips and their notes."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    SelectBase,
    String,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.cards import TipLine
from bot.similarity import TipText, tip_terms
from bot.tips import Tip, TipDraft, TipNote, TipState, Urgency
from storage.tables import OPEN_TIP, tip_notes, tips
from storage.tables import tip_terms as tip_terms_table

# How many of the most recent open tips a card compares its tip with.
SIMILAR_WINDOW = 500


def _tip(r: Any) -> Tip:
    return Tip(
        id=r.id,
        summary=r.summary,
        category=r.category,
        urgency=Urgency(r.urgency),
        officer=r.officer,
        intake_channel=r.intake_channel,
        filed_at=r.filed_at,
        state=TipState(r.state),
        location=r.location,
        region=r.region,
        when=r.when_text,
        details=r.details,
        claimed_by=r.claimed_by,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
        reason=r.reason,
        duplicate_of=r.duplicate_of,
        purged_at=r.purged_at,
        sla_reminded_at=r.sla_reminded_at,
        reviewed_at=r.reviewed_at,
        version=r.version,
    )


# Built once: filing runs them for every tip, and building an INSERT with .values() (and
# its cache key) cost more CPU than executing it; a multi-row VALUES of literal rows can't
# be cached at all, so it was compiled anew for every tip.
_INSERT_TIP = tips.insert().returning(tips.c.id)
# SQLite: a tip with a source key, inserted unless the key is taken (PostgreSQL:
# _insert_tip_with_terms_pg).
_INSERT_TIP_ONCE = (
    sqlite_insert(tips)
    .on_conflict_do_nothing(index_elements=[tips.c.source_key])
    .returning(tips.c.id)
)
_INSERT_TERMS = tip_terms_table.insert()
_TIP_VALUES = (
    "summary",
    "category",
    "urgency",
    "location",
    "region",
    "when_text",
    "details",
    "state",
    "officer",
    "intake_channel",
    "filed_at",
    "updated_at",
    "version",
    "source_key",
)


def _insert_tip_with_terms_pg(*, once: bool) -> Select[tuple[int]]:
    """PostgreSQL: the tip and its terms in one statement (one round trip fewer for every
    tip filed): the tip inserted (unless ``once`` and its source key is taken) and its id
    returned; its terms, given as one array, inserted with that id, so none are when the
    tip isn't."""
    tip = pg_insert(tips).values({c: bindparam(c, type_=tips.c[c].type) for c in _TIP_VALUES})
    if once:
        tip = tip.on_conflict_do_nothing(index_elements=[tips.c.source_key])
    new_tip = tip.returning(tips.c.id).cte("new_tip")
    terms = (
        tip_terms_table.insert()
        .from_select(
            ["term", "tip_id"],
            select(func.unnest(bindparam("terms", type_=ARRAY(String))), new_tip.c.id),
        )
        .cte("new_terms")
    )
    return select(new_tip.c.id).add_cte(terms)


_INSERT_TIP_WITH_TERMS_PG = {once: _insert_tip_with_terms_pg(once=once) for once in (False, True)}


async def insert_tip(
    conn: AsyncConnection,
    draft: TipDraft,
    *,
    officer: str,
    channel: str,
    now: datetime,
    source_key: str | None = None,
) -> tuple[Tip, bool]:
    """File a tip. With a ``source_key`` already seen (a platform's redelivery), returns
    the tip filed the first time and False."""
    values = {
        "summary": draft.summary,
        "category": draft.category,
        "urgency": draft.urgency.value,
        "location": draft.location,
        "region": draft.region,
        "when_text": draft.when,
        "details": draft.details,
        "state": TipState.NEW.value,
        "officer": officer,
        "intake_channel": channel,
        "filed_at": now,
        "updated_at": now,
        "version": 1,
        "source_key": source_key,
    }
    terms = tip_terms(draft.summary, draft.details, draft.location)
    if conn.dialect.name == "postgresql":
        # With a source key taken (a redelivery, or a concurrent one, whose commit this
        # waits for), nothing is inserted and no id comes back: then look that tip up.
        query = _INSERT_TIP_WITH_TERMS_PG[source_key is not None]
        tip_id = (await conn.execute(query, {**values, "terms": sorted(terms)})).scalar()
        if tip_id is None:
            return await _filed_before(conn, source_key), False
    elif source_key is None:
        tip_id = (await conn.execute(_INSERT_TIP, values)).scalar_one()
    else:
        # One statement for a new tip: insert unless the key is taken (a redelivery), then
        # look that one up.
        tip_id = (await conn.execute(_INSERT_TIP_ONCE, values)).scalar()
        if tip_id is None:
            return await _filed_before(conn, source_key), False
    # The row as written: only its id comes back (reading back every column, and parsing
    # its times, cost more than the INSERT itself).
    tip = Tip(
        id=tip_id,
        summary=draft.summary,
        category=draft.category,
        urgency=draft.urgency,
        officer=officer,
        intake_channel=channel,
        filed_at=now.astimezone(UTC),  # as the column gives it back
        state=TipState.NEW,
        location=draft.location,
        region=draft.region,
        when=draft.when,
        details=draft.details,
        version=1,
    )
    if terms and conn.dialect.name != "postgresql":  # there, the INSERT wrote them
        await conn.execute(_INSERT_TERMS, [{"term": t, "tip_id": tip_id} for t in terms])
    return tip, True


async def _filed_before(conn: AsyncConnection, source_key: str | None) -> Tip:
    """The tip that took this source key (the insert found it taken)."""
    existing = await tip_by_source_key(conn, source_key) if source_key is not None else None
    if existing is None:  # the key was taken, so its row must be there
        raise RuntimeError(f"no tip holds the taken source key {source_key!r}")
    return existing


async def _drop_terms(conn: AsyncConnection, tip_id: int) -> None:
    await conn.execute(delete(tip_terms_table).where(tip_terms_table.c.tip_id == tip_id))


async def tip_by_source_key(conn: AsyncConnection, source_key: str) -> Tip | None:
    """The tip filed from this platform request, if it was filed."""
    row = (await conn.execute(select(tips).where(tips.c.source_key == source_key))).first()
    return _tip(row) if row is not None else None


async def get_tip(conn: AsyncConnection, tip_id: int, *, for_update: bool = False) -> Tip | None:
    query = select(tips).where(tips.c.id == tip_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _tip(row)


async def save_tip(conn: AsyncConnection, tip: Tip, *, now: datetime) -> None:
    """Write a changed tip; the row must still be at the version it was loaded at.

    What the officer filed (summary, location, when, details) is not written here: it
    stays as filed until a purge removes it (``purge_tip``), so the tip's terms written at
    filing stay true while it is open. A tip that closes leaves the terms index."""
    result = await conn.execute(
        update(tips)
        .where(tips.c.id == tip.id, tips.c.version == tip.version)
        .values(
            state=tip.state.value,
            claimed_by=tip.claimed_by,
            decided_by=tip.decided_by,
            decided_at=tip.decided_at,
            reason=tip.reason,
            duplicate_of=tip.duplicate_of,
            purged_at=tip.purged_at,
            updated_at=now,
            version=tip.version + 1,
        )
    )
    if result.rowcount != 1:
        raise ConcurrentChange(tip.ref)
    tip.version += 1
    if tip.state.closed:
        await _drop_terms(conn, tip.id)


class ConcurrentChange(Exception):
    """Someone else changed the tip between loading and saving it."""


async def add_note(conn: AsyncConnection, note: TipNote) -> None:
    await conn.execute(
        tip_notes.insert().values(
            tip_id=note.tip_id, kind=note.kind, actor=note.actor, text=note.text, at=note.at
        )
    )


async def notes_for(conn: AsyncConnection, tip_id: int) -> list[TipNote]:
    rows = await conn.execute(_NOTES_FOR, {"tip_id": tip_id})
    return [TipNote(r.tip_id, r.kind, r.actor, r.text, r.at) for r in rows]


# Built once: every card refresh and `!status T-n` reads a tip's notes, and building the
# statement cost about as much as running it.
_NOTES_FOR = (
    select(tip_notes).where(tip_notes.c.tip_id == bindparam("tip_id")).order_by(tip_notes.c.id)
)


async def similar_open_tips(
    conn: AsyncConnection,
    words: Collection[str],
    place: str | None,
    *,
    exclude: int,
    limit: int = 3,
    window: int = SIMILAR_WINDOW,
) -> list[TipText]:
    """Of the ``window`` most recent open tips (other than ``exclude``), the ``limit`` most
    like one with these word terms and place term (bot.similarity), best first.

    Ranked in the database as ``similar_tips`` ranks (3 for the same place, plus the shared
    words when there are at least two; the newest first among equals), from the index of
    open tips' terms, so only the few shown come back: given these, ``similar_tips`` shows
    what it would show given the whole window. The window, not every open tip: words such
    as "suspicious" or "vehicle" are in most tips, so ranking every open tip would read
    most of the index for a tip of a few lines (measured with 5,000 open tips of realistic
    text: 11-22 ms a card on SQLite, against 1-2.5 ms within the window)."""
    if len(words) < 2 and not place:
        return []  # nothing could qualify
    terms = [*words, place] if place else list(words)
    params = {
        "terms": terms,
        "place": place,
        # More than all the word terms together: a sum of weights at or above it holds the
        # place, and what is left over is the number of shared words.
        "place_weight": len(words) + 2,
        "exclude": exclude,
        "skip": window - 1,
        "limit": limit,
    }
    query = _SIMILAR_SQLITE if conn.dialect.name == "sqlite" else _SIMILAR
    return list(map(TipText._make, (await conn.execute(query, params)).all()))


def _window_start(sqlite: bool) -> ColumnElement[int]:
    """The oldest tip id in the window: the ``window``-th most recent open tip other than
    ``exclude`` (0 with fewer open tips than that: all of them are in the window)."""
    oldest: SelectBase
    if sqlite:
        # Without statistics (as the bot runs, it never analyzes) SQLite takes an equality
        # on an indexed column for ~10 rows, so it would look the open states up in
        # ix_tips_state and sort every open tip (0.8 ms at 5,000 open tips) instead of
        # walking ix_tips_open from the newest end (0.02 ms); INDEXED BY keeps the plan
        # (and fails loudly should that index ever go).
        oldest = text(
            f"SELECT tips.id FROM tips INDEXED BY ix_tips_open WHERE {_OPEN_TIP_SQLITE} "
            "AND tips.id != :exclude ORDER BY tips.id DESC LIMIT 1 OFFSET :skip"
        ).columns(tips.c.id)
    else:
        oldest = (
            select(tips.c.id)
            .where(OPEN_TIP, tips.c.id != bindparam("exclude"))
            .order_by(tips.c.id.desc())
            .limit(1)
            .offset(bindparam("skip"))
        )
    return func.coalesce(oldest.scalar_subquery(), 0)


def _similar_query(sqlite: bool) -> Select[tuple[int, str, str | None, str | None]]:
    # Built once per dialect: a card renders it on every change to a tip, and building the
    # statement cost as much as running it.
    t = tip_terms_table
    # One pass over the matching terms of the window's tips, one number per tip: each word
    # term weighs 1 and the place term ``place_weight`` (with no place, :place is NULL and
    # matches no term). Half the work of counting the place and the words apart, which
    # carried each term into the grouping and ran three sums per row.
    weight = bindparam("place_weight", type_=Integer)
    total = func.sum(
        case((t.c.term == bindparam("place", type_=String), weight), else_=literal_column("1"))
    )
    hits = (
        select(t.c.tip_id, total.label("total"))
        .where(
            t.c.term.in_(bindparam("terms", expanding=True)),
            t.c.tip_id >= _window_start(sqlite),
            t.c.tip_id != bindparam("exclude"),
        )
        .group_by(t.c.tip_id)
        .subquery()
    )
    same_place = hits.c.total >= weight
    shared = case((same_place, hits.c.total - weight), else_=hits.c.total)
    score = (
        case((same_place, literal_column("3")), else_=literal_column("0"))
        + case((shared >= literal_column("2"), shared), else_=literal_column("0"))
    ).label("score")
    ranked = (
        select(hits.c.tip_id, score)
        # The same place (total >= weight >= 2), or at least two shared words. Tested on
        # the grouped rows rather than in a HAVING: a HAVING repeats the sum, and SQLite
        # (its parameters numbered apart) then computed it twice for every matching term
        # row (the query's CPU with 100,000 tips: 0.22 -> 0.18 ms). The score is ordered
        # by its label for the same reason, and its constants are literals.
        .where(hits.c.total >= literal_column("2"))
        .order_by(score.desc(), hits.c.tip_id.desc())
        .limit(bindparam("limit"))
        .subquery()
    )
    return (
        select(tips.c.id, tips.c.summary, tips.c.details, tips.c.location)
        .join(ranked, ranked.c.tip_id == tips.c.id)
        # Terms leave the index when a tip closes; this keeps a closed tip off a card even
        # if they somehow had not.
        .where(OPEN_TIP)
        .order_by(ranked.c.score.desc(), tips.c.id.desc())
    )


_OPEN_TIP_SQLITE = str(OPEN_TIP.compile(dialect=sqlite_dialect()))
_SIMILAR = _similar_query(sqlite=False)
_SIMILAR_SQLITE = _similar_query(sqlite=True)


async def tips_by_officer(conn: AsyncConnection, officer: str, *, limit: int = 10) -> list[TipLine]:
    """An officer's most recent tips, newest first, as status lines."""
    rows = await conn.execute(_BY_OFFICER, {"officer": officer, "limit": limit})
    return [_line(*r) for r in rows]


async def tips_waiting_for_officer(conn: AsyncConnection, officer: str) -> list[TipLine]:
    """An officer's tips waiting for their answer (needs_info), newest first: every one,
    however old, as status lines."""
    rows = await conn.execute(_WAITING_FOR_OFFICER, {"officer": officer})
    return [_line(*r) for r in rows]


async def tip_count_by_officer(conn: AsyncConnection, officer: str) -> int:
    """How many tips an officer has filed: of which ``tips_by_officer`` shows the latest."""
    return int((await conn.execute(_COUNT_BY_OFFICER, {"officer": officer})).scalar_one())


async def tips_in_queue(conn: AsyncConnection, *, limit: int = 20) -> list[TipLine]:
    """Open tips, most urgent first and oldest first within an urgency: the analysts'
    queue (its first ``limit``), as status lines."""
    query = _QUEUE_SQLITE if conn.dialect.name == "sqlite" else _QUEUE
    return [_line(*r) for r in await conn.execute(query, {"limit": limit})]


async def open_tip_count(conn: AsyncConnection) -> int:
    """How many tips are open: the whole queue, of which ``tips_in_queue`` shows the top."""
    query = _OPEN_COUNT_SQLITE if conn.dialect.name == "sqlite" else _OPEN_COUNT
    return int((await conn.execute(query)).scalar_one())


# A status line's columns only (bot.cards.TipLine), in its order, read by position: with
# whole tips, building each one (20 in the queue) and parsing its six times cost more than
# the lines themselves (CPU of `!status` for the queue with 100,000 tips on SQLite,
# in-process: see benchmarks/README.md).
_LINE_COLUMNS = (
    tips.c.id,
    tips.c.summary,
    tips.c.state,
    tips.c.claimed_by,
    tips.c.decided_by,
    tips.c.duplicate_of,
    tips.c.filed_at,
    tips.c.purged_at,
    tips.c.urgency,
    tips.c.sla_reminded_at,
)
_STATES = {state.value: state for state in TipState}
_URGENCIES = {urgency.value: urgency for urgency in Urgency}


def _line(
    tip_id: int,
    summary: str,
    state: str,
    claimed_by: str | None,
    decided_by: str | None,
    duplicate_of: int | None,
    filed_at: datetime,
    purged_at: datetime | None,
    urgency: str,
    sla_reminded_at: datetime | None,
) -> TipLine:
    return TipLine(
        tip_id,
        summary,
        _STATES[state],
        claimed_by,
        decided_by,
        duplicate_of,
        filed_at,
        purged_at,
        _URGENCIES[urgency],
        sla_reminded_at,
    )


# Built once, as the other statements read on every command.
_BY_OFFICER = (
    select(*_LINE_COLUMNS)
    .where(tips.c.officer == bindparam("officer"))
    .order_by(tips.c.id.desc())
    .limit(bindparam("limit"))
)
_WAITING_FOR_OFFICER = (
    select(*_LINE_COLUMNS)
    .where(
        tips.c.officer == bindparam("officer"),
        tips.c.state == TipState.NEEDS_INFO.value,
        tips.c.purged_at.is_(None),
    )
    .order_by(tips.c.id.desc())
)
_COUNT_BY_OFFICER = (
    select(func.count()).select_from(tips).where(tips.c.officer == bindparam("officer"))
)
# Most urgent first: the urgencies' names sort in their order (ix_tips_queue relies on it).
_QUEUE = (
    select(*_LINE_COLUMNS)
    .where(OPEN_TIP)
    .order_by(tips.c.urgency, tips.c.id)
    .limit(bindparam("limit"))
)
# As for the similar tips' window: without statistics SQLite would sort every open tip
# found through ix_tips_state instead of reading the first few of ix_tips_queue.
_QUEUE_SQLITE = text(
    f"SELECT {', '.join(f'tips.{c.name}' for c in _LINE_COLUMNS)} FROM tips "
    f"INDEXED BY ix_tips_queue WHERE {_OPEN_TIP_SQLITE} "
    "ORDER BY tips.urgency, tips.id LIMIT :limit"
).columns(*_LINE_COLUMNS)
_OPEN_COUNT = select(func.count()).select_from(tips).where(OPEN_TIP)
_OPEN_COUNT_SQLITE = text(
    f"SELECT count(*) FROM tips INDEXED BY ix_tips_open WHERE {_OPEN_TIP_SQLITE}"
)


# --- SLA reminders and retention (28 CFR Part 23) -----------------------------------------
# Each change below is a conditional UPDATE: of two processes running the same job, only one
# finds the row still matching, so the work happens once.


async def untriaged_past(
    conn: AsyncConnection, cutoffs: Mapping[Urgency, datetime], *, limit: int = 500
) -> list[Tip]:
    """New tips, not yet reminded about, filed at or before the cutoff for their urgency."""
    due = or_(
        *(
            and_(tips.c.urgency == urgency.value, tips.c.filed_at <= cutoff)
            for urgency, cutoff in cutoffs.items()
        )
    )
    rows = await conn.execute(
        select(tips)
        .where(
            tips.c.state == TipState.NEW.value,
            tips.c.purged_at.is_(None),
            tips.c.sla_reminded_at.is_(None),
            due,
        )
        .order_by(tips.c.id)
        .limit(limit)
    )
    return [_tip(r) for r in rows]


async def mark_sla_reminded(conn: AsyncConnection, tip_id: int, *, now: datetime) -> Tip | None:
    """Record the reminder; None if the tip was meanwhile triaged, purged or reminded about.

    The version is left alone: an analyst acting on the tip at the same moment must not be
    told it changed under them, and nothing they save touches this column."""
    row = (
        await conn.execute(
            update(tips)
            .where(
                tips.c.id == tip_id,
                tips.c.state == TipState.NEW.value,
                tips.c.purged_at.is_(None),
                tips.c.sla_reminded_at.is_(None),
            )
            .values(sla_reminded_at=now)
            .returning(*tips.c)
        )
    ).first()
    return None if row is None else _tip(row)


async def rejected_before(
    conn: AsyncConnection, cutoff: datetime, *, limit: int = 500
) -> list[Tip]:
    """Rejected tips decided at or before ``cutoff`` whose content is still held."""
    rows = await conn.execute(
        select(tips)
        .where(
            tips.c.state == TipState.REJECTED.value,
            tips.c.purged_at.is_(None),
            tips.c.decided_at <= cutoff,
        )
        .order_by(tips.c.id)
        .limit(limit)
    )
    return [_tip(r) for r in rows]


async def purge_tip(conn: AsyncConnection, tip_id: int, *, now: datetime) -> Tip | None:
    """Remove a rejected tip's content and its notes, keeping the bare record (id, category,
    urgency, people, dates). None if it is not a rejected tip still holding content."""
    row = (
        await conn.execute(
            update(tips)
            .where(
                tips.c.id == tip_id,
                tips.c.state == TipState.REJECTED.value,
                tips.c.purged_at.is_(None),
            )
            .values(
                summary="",
                location=None,
                region=None,
                when_text=None,
                details=None,
                reason=None,
                purged_at=now,
                updated_at=now,
                # A writer holding the tip as loaded before must fail, not write content back.
                version=tips.c.version + 1,
            )
            .returning(*tips.c)
        )
    ).first()
    if row is None:
        return None
    await conn.execute(delete(tip_notes).where(tip_notes.c.tip_id == tip_id))
    # None left since it was rejected; this holds should a rejection ever have kept them.
    await _drop_terms(conn, tip_id)
    return _tip(row)


def _review_period_start() -> ColumnElement[datetime]:
    return func.coalesce(tips.c.reviewed_at, tips.c.filed_at)


async def due_for_review(conn: AsyncConnection, cutoff: datetime, *, limit: int = 500) -> list[Tip]:
    """Records still held whose period (last validation, else filing) began at or before
    ``cutoff``; longest overdue first."""
    start = _review_period_start()
    rows = await conn.execute(
        select(tips)
        .where(tips.c.purged_at.is_(None), start <= cutoff)
        .order_by(start, tips.c.id)
        .limit(limit)
    )
    return [_tip(r) for r in rows]


async def mark_reviewed(conn: AsyncConnection, tip_id: int, *, now: datetime) -> Tip | None:
    """Start a new retention period; None if there is no such record or it was purged."""
    row = (
        await conn.execute(
            update(tips)
            .where(tips.c.id == tip_id, tips.c.purged_at.is_(None))
            .values(reviewed_at=now)
            .returning(*tips.c)
        )
    ).first()
    return None if row is None else _tip(row)
