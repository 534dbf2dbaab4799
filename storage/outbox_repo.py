"""Outbox rows: every outgoing post, edit and delete, written in the same transaction as
the change that caused it, and handed to the delivery worker afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
    key_is_new: bool = False,
) -> int:
    """Queue a new message. ``key`` makes enqueueing idempotent (a second call is a no-op).
    ``key_is_new``: the caller knows no row has that key (it names something created in
    this very transaction), so the look-up is skipped; the key stays unique regardless."""
    if key is not None and not key_is_new:
        existing = await conn.scalar(select(outbox.c.id).where(outbox.c.key == key))
        if existing is not None:
            return int(existing)
    elif key is None:
        key = f"post:{uuid.uuid4().hex}"  # fresh: no need to look for it first
    result = await conn.execute(
        outbox.insert()
        .values(
            key=key,
            op="post",
            target=target,
            ephemeral_to=ephemeral_to,
            message_key=message_key,
            payload=message.model_dump(mode="json"),
            state=PENDING,
            attempts=0,
            next_attempt_at=not_before or now,
            created_at=now,
        )
        .returning(outbox.c.id)
    )
    return int(result.scalar_one())


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
    were queued."""
    keys = {f"{message_key}@{target}": target for target in dict.fromkeys(targets)}
    existing: set[str] = set()
    listed = list(keys)
    for start in range(0, len(listed), 500):
        chunk = listed[start : start + 500]
        existing.update(await conn.scalars(select(outbox.c.key).where(outbox.c.key.in_(chunk))))
    payload = message.model_dump(mode="json")
    rows = [
        {
            "key": key,
            "op": "post",
            "target": target,
            "ephemeral_to": None,
            "message_key": message_key,
            "payload": payload,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for key, target in keys.items()
        if key not in existing
    ]
    if rows:
        await conn.execute(outbox.insert(), rows)
    return len(rows)


async def enqueue_edit(
    conn: AsyncConnection, *, target: str, message_key: str, message: Message, now: datetime
) -> None:
    """Queue an edit of an earlier message, coalescing with what is still waiting.

    If the post itself has not left yet, it simply leaves with the new content; if an
    earlier edit is still waiting, it is replaced: only the latest state matters.
    """
    payload = message.model_dump(mode="json")
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
            update(outbox)
            .where(outbox.c.id == bindparam("row_id"))
            .values(
                state=SENT,
                platform_ref=bindparam("ref"),
                sent_at=bindparam("at"),
                lease_until=None,
                last_error=None,
            ),
            [{"row_id": row_id, "ref": ref, "at": at} for row_id, ref, at in sent],
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
    await conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))


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
