"""Alert commands: !alert shows an alert and where it went (who got it, when, who was left
out and why); !update and !retract change every delivered copy; partners answer with
!feedback."""

from __future__ import annotations

from bot.alert_changes import retract_alert, update_alert
from bot.alert_messages import alert_log_message, withdrawal_header
from bot.alerts import alert_key, parse_alert_ref
from bot.errors import UserError
from bot.feedback import give_feedback, parse_verdict
from commands.context import Context
from commands.registry import Role, command
from commands.text import first_word
from storage import alerts_repo, digests_repo, feedback_repo, outbox_repo


def alert_and_text(ctx: Context, args: str, verb: str, rest_name: str | None) -> tuple[int, str]:
    word, rest = first_word(args)
    usage = f"{ctx.spell(verb)} A-1" + (f" <{rest_name}>" if rest_name else "")
    if not word:
        raise UserError(f"Which alert? Usage: {usage}")
    alert_id = parse_alert_ref(word)
    if alert_id is None:
        raise UserError(
            f"“{word[:30]}” is not an alert id; alert ids look like A-3. Usage: {usage}"
        )
    if rest_name and not rest:
        usage = f"{ctx.spell(verb)} A-{alert_id} <{rest_name}>"  # the alert they named
        raise UserError(f"Please add the {rest_name}. Usage: {usage}")
    return alert_id, rest


@command(
    "alert",
    role=Role.ANALYST,
    usage="A-1",
    summary="Show an alert and where it went: each delivery and its state, each "
    "partner left out with the reason, and partners' feedback.",
)
async def alert(ctx: Context, args: str) -> None:
    alert_id, _ = alert_and_text(ctx, args, "alert", None)
    core = ctx.core
    async with core.db.read() as conn:
        found = await alerts_repo.get_alert(conn, alert_id)
        if found is None:
            raise UserError(f"There is no A-{alert_id}. Alert ids are in the release answer.")
        rows = await outbox_repo.rows_for(conn, alert_key(found.id))
        feedback = await feedback_repo.feedback_for(conn, found.id)
        retraction = await alerts_repo.get_retraction(conn, found.id)
        digest_items = await digests_repo.items_for_alert(conn, found.id)
    posts = [r for r in rows if r.op == "post"]
    # A delivered copy an update withdrew (the policy no longer clears its place) holds
    # the withdrawal notice, whatever the alert's text says now.
    withdrawn = {
        r.target: r.created_at
        for r in rows
        if r.op == "edit" and r.message.header == withdrawal_header(found.ref)
    }
    await ctx.answer(
        alert_log_message(
            core.policy,
            found,
            posts,
            core.policy.center.tz,
            feedback=feedback,
            retraction=retraction,
            digest_items=digest_items,
            withdrawn=withdrawn,
        )
    )


@command(
    "update",
    role=Role.ANALYST,
    usage="A-1 <new text>",
    summary="Replace an alert's text (the title stays, and its Location: and When: lines "
    "unless you give them again); every delivered copy is edited in place and says it was "
    "updated. For whoever released it, or a supervisor.",
)
async def update(ctx: Context, args: str) -> None:
    alert_id, text = alert_and_text(ctx, args, "update", "new text")
    await update_alert(ctx.core, ctx.reply_to, alert_id, text)


@command(
    "retract",
    role=Role.ANALYST,
    usage="A-1 <reason>",
    summary="Withdraw an alert: every delivered copy becomes a retraction notice with the "
    "reason (the TLP marking stays, the content goes); a scheduled alert is cancelled. "
    "For whoever released it, or a supervisor.",
)
async def retract(ctx: Context, args: str) -> None:
    alert_id, reason = alert_and_text(ctx, args, "retract", "reason")
    await retract_alert(ctx.core, ctx.reply_to, alert_id, reason)


@command(
    "feedback",
    role=Role.ANYONE,
    usage="A-1 useful|not-useful [comment]",
    summary="Tell the fusion center whether an alert your organisation received was useful; "
    "the officer who reported it hears about it.",
    examples=("feedback A-1 useful we increased patrols near the substation",),
)
async def feedback(ctx: Context, args: str) -> None:
    usage = f"{ctx.spell('feedback')} A-1 useful|not-useful [comment]"
    alert_id, rest = alert_and_text(ctx, args, "feedback", None)
    verdict = parse_verdict(rest, usage)
    await give_feedback(ctx.core, ctx.reply_to, alert_id, verdict)
