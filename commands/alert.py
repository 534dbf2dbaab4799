"""!alert — an alert with its markings and its dissemination log (who got it, when, and
who was left out and why)."""

from __future__ import annotations

from bot.alert_messages import alert_log_message
from bot.alerts import alert_key, parse_alert_ref
from bot.errors import UserError
from commands.context import Context
from commands.registry import Role, command
from commands.text import first_word
from storage import alerts_repo, outbox_repo


@command(
    "alert",
    role=Role.ANALYST,
    usage="A-1",
    summary="Show an alert and where it went: each delivery and its state, and each "
    "partner left out with the reason.",
)
async def alert(ctx: Context, args: str) -> None:
    word, _ = first_word(args)
    usage = f"{ctx.spell('alert')} A-1"
    if not word:
        raise UserError(f"Which alert? Usage: {usage}")
    alert_id = parse_alert_ref(word)
    if alert_id is None:
        raise UserError(
            f"“{word[:30]}” is not an alert id; alert ids look like A-3. Usage: {usage}"
        )
    core = ctx.core
    async with core.db.read() as conn:
        found = await alerts_repo.get_alert(conn, alert_id)
        if found is None:
            raise UserError(f"There is no A-{alert_id}. Alert ids are in the release answer.")
        rows = await outbox_repo.rows_for(conn, alert_key(found.id))
    posts = [r for r in rows if r.op == "post"]
    await ctx.answer(alert_log_message(core.policy, found, posts, core.policy.center.tz))
