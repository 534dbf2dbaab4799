"""Outbox rows: every outgoing post, edit and delete, written in the same transaction as
the change that caused it, and handed to the delivery worker afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.messages import Message
from storage.planner_hints import rarely_true
from storage.tables import outbox

PENDING, SENDING, SENT, FAILED, HELD, SUPERSEDED = (
    "pending",
    "sending",
    "sent",
    "failed",
    "held",
    "superseded",
)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    key: str
    op: str
    target: str
    ephemeral_to: str | None
    message_key: str | None
    message: Message
    state: str
    attempts: int
    next_attempt_at: datetime
    platform_ref: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    # Taken over from a process that died while sending: it may have arrived already.
    reclaimed: bool = False


def _row(r: Any, reclaimed: bool = False) -> OutboxRow:
    return OutboxRow(
        id=r.id,
        key=r.key,
        op=r.op,
        target=r.target,
        ephemeral_to=r.ephemeral_to,
        message_key=r.message_key,
        message=Message.model_validate(r.payload),
        state=r.state,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        platform_ref=r.platform_ref,
        last_error=r.last_error,
        created_at=r.created_at,
        sent_at=r.sent_at,
        reclaimed=reclaimed,
    )


HAND_OVER = "fusionbot.outbox.hand_over"


@dataclass
class HandOver:
    """Posts a transaction queues for this process's own delivery worker.

    Put on the transaction's connection (``conn.info[HAND_OVER]``, by ``Core.transaction``)
    when a worker runs here: a post due now, for a platform that worker serves, is
    inserted already leased to this process (``sending`` until now + ``lease``, as if it
    had been claimed) and listed in ``rows``; after the commit the worker takes the rows
    from there, without a claim. A rollback hands nothing over (the rows never existed); a
    crash before they are sent leaves them leased like any claimed row: the lease runs
    out, they are taken over and the platform is asked before any resend. ``others`` says
    the transaction also queued something the worker must claim (a scheduled post, an
    edit, another platform's post)."""

    platforms: frozenset[str]
    lease: timedelta
    rows: list[OutboxRow] = field(default_factory=list)
    others: bool = False
    open: bool = True

    def takes(self, target: str, due: datetime, now: datetime) -> bool:
        return due <= now and target.partition(":")[0] in self.platforms


def hand_over_of(conn: AsyncConnection) -> HandOver | None:
    hand_over = cast("HandOver | None", conn.info.get(HAND_OVER))
    return hand_over if hand_over is not None and hand_over.open else None


# Built once: building an INSERT cost about as much CPU as executing it, and filing a tip
# queues two posts.
_INSERT = outbox.insert().returning(outbox.c.id)
# Several new posts in one statement on PostgreSQL (a filed tip's card and receipt): one
# round trip; the ids come back in the order of the rows.
_INSERT_SEVERAL = outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True)
_IDS_BY_MESSAGE_KEY = select(outbox.c.id, outbox.c.key).where(
    outbox.c.message_key == bindparam("message_key")
)
_ID_BY_KEY = select(outbox.c.id).where(outbox.c.key == bindparam("key"))


def _new_row(
    hand_over: HandOver | None,
    *,
    key: str,
    target: str,
    ephemeral_to: str | None,
    message_key: str | None,
    payload: dict[str, Any],
    due: datetime,
    now: datetime,
) -> dict[str, Any]:
    lease_until = None
    if hand_over is not None:
        if hand_over.takes(target, due, now):
            lease_until = now + hand_over.lease
        else:
            hand_over.others = True
    return {
        "key": key,
        "op": "post",
        "target": target,
        "ephemeral_to": ephemeral_to,
        "message_key": message_key,
        "payload": payload,
        "state": PENDING if lease_until is None else SENDING,
        "attempts": 0,
        "next_attempt_at": due,
        "lease_until": lease_until,
        "created_at": now,
    }


def _handed_row(row_id: int, values: dict[str, Any], message: Message) -> OutboxRow:
    return OutboxRow(
        id=row_id,
        key=values["key"],
        op="post",
        target=values["target"],
        ephemeral_to=values["ephemeral_to"],
        message_key=values["message_key"],
        message=message,
        state=SENDING,
        attempts=0,
        next_attempt_at=values["next_attempt_at"],
        platform_ref=None,
        last_error=None,
        created_at=values["created_at"],
        sent_at=None,
    )


async def enqueue_post(
    conn: AsyncConnection,
    *,
    target: str,
    message: Message,
    now: datetime,
    message_key: str | None = None,
    ephemeral_to: str | None = None,
    key: str | None = None,
    not_before: datetime | None = None,
) -> int:
    """Queue a new message. ``key`` makes enqueueing idempotent (a second call is a no-op).
    In a transaction with a :class:`HandOver` a post due now goes to this process's worker
    after the commit."""
    if key is not None:
        existing = await conn.scalar(_ID_BY_KEY, {"key": key})
        if existing is not None:
            return int(existing)
    else:
        key = f"post:{uuid.uuid4().hex}"  # fresh: no need to look for it first
    hand_over = hand_over_of(conn)
    values = _new_row(
        hand_over,
        key=key,
        target=target,
        ephemeral_to=ephemeral_to,
        message_key=message_key,
        payload=message.model_dump(mode="json"),
        due=not_before or now,
        now=now,
    )
    return (await _insert_new_rows(conn, hand_over, [values], [message]))[0]


@dataclass(frozen=True)
class NewPost:
    """A post for :func:`enqueue_new_posts`. ``key`` None: a fresh one."""

    target: str
    message: Message
    message_key: str | None = None
    ephemeral_to: str | None = None
    key: str | None = None


async def enqueue_new_posts(
    conn: AsyncConnection, posts: Sequence[NewPost], *, now: datetime
) -> list[int]:
    """Queue posts due now, in one statement, whose keys no row has: fresh ones, or keys
    naming something created in this very transaction, so no look-up (the keys stay
    unique regardless). Their ids, in order. Handed over like :func:`enqueue_post`'s."""
    hand_over = hand_over_of(conn)
    rows = [
        _new_row(
            hand_over,
            key=post.key or f"post:{uuid.uuid4().hex}",
            target=post.target,
            ephemeral_to=post.ephemeral_to,
            message_key=post.message_key,
            payload=post.message.model_dump(mode="json"),
            due=now,
            now=now,
        )
        for post in posts
    ]
    return await _insert_new_rows(conn, hand_over, rows, [post.message for post in posts])


async def _insert_new_rows(
    conn: AsyncConnection,
    hand_over: HandOver | None,
    rows: list[dict[str, Any]],
    messages: list[Message],
) -> list[int]:
    """Insert rows made by :func:`_new_row` (each with its message); their ids, in order.
    Those leased to this process are listed in the hand-over."""
    if len(rows) > 1 and conn.dialect.name == "postgresql":
        ids = [int(row_id) for row_id in (await conn.execute(_INSERT_SEVERAL, rows)).scalars()]
    else:
        # SQLite: no round trips to save, and SQLAlchemy would insert the rows one by one
        # anyway to return their ids in order, at more CPU than these cached INSERTs.
        ids = [int((await conn.execute(_INSERT, values)).scalar_one()) for values in rows]
    if hand_over is not None:
        hand_over.rows.extend(
            _handed_row(row_id, values, message)
            for row_id, values, message in zip(ids, rows, messages, strict=True)
            if values["state"] == SENDING
        )
    return ids


async def enqueue_posts(
    conn: AsyncConnection,
    *,
    targets: Sequence[str],
    message: Message,
    now: datetime,
    message_key: str,
) -> int:
    """Queue one message to many targets (an alert's fan-out) in two statements, keyed
    ``<message_key>@<target>`` like :func:`enqueue_post` with that key; targets already
    queued are skipped. One SELECT and one multi-row INSERT instead of two round trips per
    target: at 1,000 partner channels that is most of a release's time. Returns how many
    were queued. Handed over like :func:`enqueue_post`'s."""
    keys = {f"{message_key}@{target}": target for target in dict.fromkeys(targets)}
    existing: set[str] = set()
    listed = list(keys)
    for start in range(0, len(listed), 500):
        chunk = listed[start : start + 500]
        existing.update(await conn.scalars(select(outbox.c.key).where(outbox.c.key.in_(chunk))))
    payload = message.model_dump(mode="json")
    hand_over = hand_over_of(conn)
    rows = [
        _new_row(
            hand_over,
            key=key,
            target=target,
            ephemeral_to=None,
            message_key=message_key,
            payload=payload,
            due=now,
            now=now,
        )
        for key, target in keys.items()
        if key not in existing
    ]
    if not rows:
        return 0
    await conn.execute(outbox.insert(), rows)
    handed = {values["key"]: values for values in rows if values["state"] == SENDING}
    if hand_over is not None and handed:
        # Their ids: read back (cheaper than RETURNING from a multi-row INSERT here).
        found = await conn.execute(_IDS_BY_MESSAGE_KEY, {"message_key": message_key})
        by_key = {key: row_id for row_id, key in found}
        hand_over.rows.extend(
            _handed_row(by_key[key], values, message) for key, values in handed.items()
        )
    return len(rows)


async def enqueue_edit(
    conn: AsyncConnection, *, target: str, message_key: str, message: Message, now: datetime
) -> None:
    """Queue an edit of an earlier message, coalescing with what is still waiting.

    If the post itself has not left yet, it simply leaves with the new content; if an
    earlier edit is still waiting, it is replaced: only the latest state matters.
    """
    payload = message.model_dump(mode="json")
    hand_over = hand_over_of(conn)
    if hand_over is not None:
        hand_over.others = True  # the worker claims edits
    waiting = (
        await conn.execute(
            select(outbox.c.id, outbox.c.op)
            .where(
                outbox.c.message_key == message_key,
                outbox.c.target == target,
                outbox.c.op.in_(("post", "edit")),
                outbox.c.state == PENDING,
            )
            .order_by(outbox.c.id.desc())
            .limit(1)
        )
    ).first()
    if waiting is not None:
        await conn.execute(update(outbox).where(outbox.c.id == waiting.id).values(payload=payload))
        return
    await conn.execute(
        outbox.insert().values(
            key=f"edit:{uuid.uuid4().hex}",
            op="edit",
            target=target,
            message_key=message_key,
            payload=payload,
            state=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


async def message_targets(conn: AsyncConnection, message_key: str) -> list[str]:
    """Every place a logical message (a tip's card, an alert) was posted to."""
    rows = await conn.execute(
        select(outbox.c.target)
        .where(outbox.c.message_key == message_key, outbox.c.op == "post")
        .order_by(outbox.c.id)
    )
    return list(dict.fromkeys(r.target for r in rows))


async def message_at(conn: AsyncConnection, platform_ref: str) -> OutboxRow | None:
    """The message a platform reference points at, as it reads now: the post, or its
    latest edit (a reaction to a card acts on the card's current buttons)."""
    post = (
        await conn.execute(
            select(outbox).where(outbox.c.platform_ref == platform_ref, outbox.c.op == "post")
        )
    ).first()
    if post is None:
        return None
    if post.message_key is None:
        return _row(post)
    latest = (
        await conn.execute(
            select(outbox)
            .where(
                outbox.c.message_key == post.message_key,
                outbox.c.target == post.target,
                outbox.c.op.in_(("post", "edit")),
                outbox.c.id >= post.id,
            )
            .order_by(outbox.c.id.desc())
            .limit(1)
        )
    ).first()
    return _row(latest or post)


async def claim_due(
    conn: AsyncConnection,
    *,
    now: datetime,
    lease: timedelta,
    platforms: Iterable[str],
    busy_targets: Sequence[str] = (),
    limit: int = 200,
    reclaim: bool = True,
) -> list[OutboxRow]:
    """Take due rows for sending, oldest first. A row whose lease ran out was being sent
    by a process that died: it is taken again (unless ``reclaim`` is false), and its
    sender checks whether it already arrived.

    Without ``reclaim`` the claim is one statement (a worker woken by a commit looks for
    new rows only: leases run out with time, not with commits, and its timed passes
    reclaim); with it, two, because the rows' earlier state tells which were reclaimed."""
    if limit <= 0:
        return []
    platform_filter = or_(*(outbox.c.target.startswith(f"{p}:") for p in platforms))
    # Few rows wait among the many sent: said to SQLite, so statistics don't make it scan
    # the outbox instead of using ix_outbox_due (storage/planner_hints.py).
    pending = and_(rarely_true(outbox.c.state == PENDING), outbox.c.next_attempt_at <= now)
    expired = and_(rarely_true(outbox.c.state == SENDING), outbox.c.lease_until < now)
    due = and_(platform_filter, or_(pending, expired) if reclaim else pending)
    query = select(outbox.c.id, outbox.c.state).where(due).order_by(outbox.c.id).limit(limit)
    if busy_targets:
        query = query.where(outbox.c.target.not_in(list(busy_targets)))
    if conn.dialect.name == "postgresql":
        # Several replicas share the outbox; each row goes to exactly one of them.
        query = query.with_for_update(skip_locked=True)
    take = update(outbox).values(state=SENDING, lease_until=now + lease).returning(*outbox.c)
    if not reclaim:
        ids = query.with_only_columns(outbox.c.id).scalar_subquery()
        rows = await conn.execute(take.where(outbox.c.id.in_(ids)))
        return sorted((_row(r) for r in rows), key=lambda r: r.id)
    found = (await conn.execute(query)).all()
    if not found:
        return []
    reclaimed = {r.id for r in found if r.state == SENDING}
    rows = await conn.execute(take.where(outbox.c.id.in_([r.id for r in found])))
    return sorted((_row(r, r.id in reclaimed) for r in rows), key=lambda r: r.id)


async def end_leases(conn: AsyncConnection, *, now: datetime) -> int:
    """End every lease now: rows being sent become claimable at once, as taken over."""
    result = await conn.execute(
        update(outbox)
        .where(outbox.c.state == SENDING)
        .values(lease_until=now - timedelta(seconds=1))
    )
    return int(result.rowcount or 0)


async def release(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Give claimed rows back untouched (more than one pass should take for a target)."""
    if ids:
        await conn.execute(
            update(outbox).where(outbox.c.id.in_(list(ids))).values(state=PENDING, lease_until=None)
        )


async def mark_sent_many(
    conn: AsyncConnection, sent: Sequence[tuple[int, str | None, datetime]]
) -> None:
    """Record deliveries, (row id, platform ref, sent at) each, in one statement."""
    if sent:
        await conn.execute(
            _MARK_SENT, [{"row_id": row_id, "ref": ref, "at": at} for row_id, ref, at in sent]
        )


# Built once: every delivery is recorded with it.
_MARK_SENT = (
    update(outbox)
    .where(outbox.c.id == bindparam("row_id"))
    .values(
        state=SENT,
        platform_ref=bindparam("ref"),
        sent_at=bindparam("at"),
        lease_until=None,
        last_error=None,
    )
)


async def reschedule(
    conn: AsyncConnection, row_id: int, *, at: datetime, error: str | None, count_attempt: bool
) -> None:
    values: dict[str, Any] = {
        "state": PENDING,
        "next_attempt_at": at,
        "lease_until": None,
        "last_error": error,
    }
    if count_attempt:
        values["attempts"] = outbox.c.attempts + 1
    # Only a row still being sent: recording its delivery may have been committed after
    # all (PostgreSQL, a connection cut during the commit), and a delivered row must not
    # be queued again (an ephemeral answer can't be looked up before a resend).
    await conn.execute(
        update(outbox).where(outbox.c.id == row_id, outbox.c.state == SENDING).values(**values)
    )


async def mark_final(conn: AsyncConnection, row_id: int, *, state: str, error: str) -> None:
    await conn.execute(
        update(outbox)
        .where(outbox.c.id == row_id)
        .values(state=state, last_error=error, lease_until=None, attempts=outbox.c.attempts + 1)
    )


async def post_status(
    conn: AsyncConnection, message_key: str, target: str
) -> tuple[str, str | None] | None:
    """State and platform ref of the original post of a logical message at a target."""
    row = (
        await conn.execute(
            select(outbox.c.state, outbox.c.platform_ref)
            .where(
                outbox.c.message_key == message_key,
                outbox.c.target == target,
                outbox.c.op == "post",
            )
            .order_by(outbox.c.id)
            .limit(1)
        )
    ).first()
    return None if row is None else (row.state, row.platform_ref)


async def count_by_state(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))
    return {state: int(n) for state, n in rows}


async def rows_for(conn: AsyncConnection, message_key: str) -> list[OutboxRow]:
    rows = await conn.execute(
        select(outbox).where(outbox.c.message_key == message_key).order_by(outbox.c.id)
    )
    return [_row(r) for r in rows]


async def waiting_by_platform(conn: AsyncConnection) -> dict[str, int]:
    """Messages not yet delivered, by the platform they wait for."""
    rows = await conn.execute(
        select(outbox.c.target).where(rarely_true(outbox.c.state.in_((PENDING, SENDING, HELD))))
    )
    counts: dict[str, int] = {}
    for row in rows:
        platform = row.target.partition(":")[0]
        counts[platform] = counts.get(platform, 0) + 1
    return counts


async def redact(
    conn: AsyncConnection, message_key: str, replacement: Message, *, withdraw_waiting: bool
) -> int:
    """Replace the stored content of a logical message's rows (retention purge).

    With ``withdraw_waiting`` rows not yet sent are withdrawn rather than sent as a stub;
    without it they are left for the caller to re-queue (a card's purged edit coalesces
    into them)."""
    payload = replacement.model_dump(mode="json")
    changed = 0
    if withdraw_waiting:
        withdrawn = await conn.execute(
            update(outbox)
            .where(outbox.c.message_key == message_key, outbox.c.state.in_((PENDING, HELD)))
            .values(state=SUPERSEDED, payload=payload, last_error="withdrawn: content purged")
        )
        changed += int(withdrawn.rowcount or 0)
    kept = await conn.execute(
        update(outbox)
        .where(
            outbox.c.message_key == message_key,
            outbox.c.state.not_in((PENDING, HELD, SENDING)),
        )
        .values(payload=payload)
    )
    return changed + int(kept.rowcount or 0)


async def release_held(conn: AsyncConnection, *, target_prefix: str, now: datetime) -> int:
    """Send held rows again (e.g. the app was reinstalled in that workspace): every held
    row whose target starts with ``target_prefix`` is due now. Returns how many."""
    result = await conn.execute(
        update(outbox)
        .where(outbox.c.state == HELD, outbox.c.target.startswith(target_prefix, autoescape=True))
        .values(state=PENDING, next_attempt_at=now, lease_until=None)
    )
    return int(result.rowcount or 0)
