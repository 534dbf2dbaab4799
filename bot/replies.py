"""Answers to the person who gave a command, queued in the outbox like everything else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.messages import Message
from storage.outbox_repo import NewPost, enqueue_post


@dataclass(frozen=True)
class ReplyTo:
    """Where a command came from: answers go back there, visible to its author only."""

    actor: str
    channel: str
    is_dm: bool = False
    # The platform's id for the command message, so replies can thread under it.
    source_ref: str | None = None


async def reply(
    conn: AsyncConnection, to: ReplyTo, message: Message | str, *, now: datetime
) -> None:
    post = reply_post(to, message)
    await enqueue_post(
        conn, target=post.target, ephemeral_to=post.ephemeral_to, message=post.message, now=now
    )


def reply_post(to: ReplyTo, message: Message | str) -> NewPost:
    """The post :func:`reply` queues, for a caller queueing it with others."""
    if isinstance(message, str):
        message = Message(text=message)
    if to.source_ref is not None and message.reply_to is None:
        message = message.model_copy(update={"reply_to": to.source_ref})
    if to.is_dm:
        return NewPost(target=to.actor, message=message)
    return NewPost(target=to.channel, ephemeral_to=to.actor, message=message)


async def direct_message(
    conn: AsyncConnection,
    person: str,
    message: Message | str,
    *,
    now: datetime,
    about: str | None = None,
) -> None:
    """``about`` names what the message quotes (``tip:12``), so that a retention purge can
    find and redact the stored copy."""
    if isinstance(message, str):
        message = Message(text=message)
    await enqueue_post(conn, target=person, message=message, now=now, message_key=about)
