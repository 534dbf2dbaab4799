"""!reload — admins swap in an edited policy file without a restart.

Every attempt is audited: a reload with the file's SHA-256 and each setting it changed (who
is cleared for what is why a partner did or didn't get an alert, 28 CFR 23.20(f)), and a
refused one with the problems that kept the old policy in force."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.errors import UserError
from bot.policy_changes import file_digest, policy_changes
from bot.policy_loader import PolicyError, check_policy_file
from bot.replies import reply
from bot.wording import counted
from commands.context import Context
from commands.registry import Role, command
from storage.audit_repo import append_audit

log = logging.getLogger(__name__)

# Changes listed in the answer; the audit entry keeps them all.
SHOWN = 15


@command(
    "reload", role=Role.ADMIN, summary="Reload the policy file; a broken file changes nothing."
)
async def reload(ctx: Context, args: str) -> None:
    holder = ctx.core.policies
    digest = file_digest(Path(holder.source))
    now = ctx.core.clock.now()
    audited = {"source": str(holder.source), "sha256": digest}
    try:
        policy, warnings = check_policy_file(holder.source)
    except PolicyError as exc:
        async with ctx.core.transaction() as conn:
            await _audit(
                conn, ctx, now, "policy.reload_refused", {**audited, "problems": exc.problems}
            )
        problems = "\n".join(exc.problems[:10])
        raise UserError(
            f"The policy file has problems; the old policy stays in force.\n{problems}"
        ) from None
    changes = policy_changes(holder.policy, policy)
    async with ctx.core.transaction() as conn:
        await _audit(
            conn,
            ctx,
            now,
            "policy.reloaded",
            {**audited, "partners": len(policy.partners), "changes": changes},
        )
        changed = (
            f"{counted(len(changes), 'change')}:\n" + "\n".join(changes[:SHOWN])
            if changes
            else "nothing changed."
        )
        if len(changes) > SHOWN:
            changed += f"\n… and {len(changes) - SHOWN} more (all in the audit log)."
        await reply(
            conn,
            ctx.reply_to,
            f"Policy reloaded from {holder.source} ({counted(len(policy.review), 'review route')}, "
            f"{counted(len(policy.partners), 'partner')}); {changed}"
            + "".join(f"\n{warning}" for warning in warnings[:10]),
            now=now,
        )
    holder.replace(policy)
    for warning in warnings:
        log.warning("%s", warning)


async def _audit(
    conn: AsyncConnection, ctx: Context, now: datetime, action: str, details: dict[str, object]
) -> None:
    """Every reload attempt, refused or not, as one audit entry about the policy."""
    await append_audit(
        conn, at=now, actor=ctx.actor, action=action, subject="policy", details=details
    )
