"""!reload — admins swap in an edited policy file without a restart."""

from __future__ import annotations

import logging

from bot.errors import UserError
from bot.policy_loader import PolicyError, check_policy_file
from bot.replies import reply
from commands.context import Context
from commands.registry import Role, command
from storage.audit_repo import append_audit

log = logging.getLogger(__name__)


@command(
    "reload", role=Role.ADMIN, summary="Reload the policy file; a broken file changes nothing."
)
async def reload(ctx: Context, args: str) -> None:
    holder = ctx.core.policies
    try:
        policy, warnings = check_policy_file(holder.source)
    except PolicyError as exc:
        problems = "\n".join(exc.problems[:10])
        raise UserError(
            f"The policy file has problems; the old policy stays in force.\n{problems}"
        ) from None
    now = ctx.core.clock.now()
    async with ctx.core.transaction() as conn:
        await append_audit(
            conn,
            at=now,
            actor=ctx.actor,
            action="policy.reloaded",
            subject="policy",
            details={"source": str(holder.source), "partners": len(policy.partners)},
        )
        await reply(
            conn,
            ctx.reply_to,
            f"Policy reloaded from {holder.source}: {len(policy.review)} review routes, "
            f"{len(policy.partners)} partners."
            + "".join(f"\n{warning}" for warning in warnings[:10]),
            now=now,
        )
    holder.replace(policy)
    for warning in warnings:
        log.warning("%s", warning)
