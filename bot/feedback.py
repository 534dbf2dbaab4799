"""Partners tell the center whether an alert helped, and the officer who filed the tip
hears about it: the loop from street to partner and back closes here.

Decisions (see also DESIGN.md):

- Feedback is taken only where the alert arrived: in a channel that received a copy, or
  in a direct message from a person who received one (TLP:RED). Anyone else gets the same
  answer whether the alert exists or not, so the command can't be used to probe for alerts.
- A copy that is still waiting, failed or was withdrawn was not received.
- Everyone's answers are kept as given; the counts shown by !alert take each person's
  latest answer, so changing one's mind doesn't count twice.
- On a TLP:RED or TLP:AMBER+STRICT alert the officer hears the verdict but not the
  comment: the officer is not one of the alert's recipients, and a recipient's comment
  may quote what the marking keeps among them. The center keeps the comment (!alert).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.alerts import Alert, AlertState, alert_key, delivered_for
from bot.core import Core
from bot.errors import UserError
from bot.replies import ReplyTo, direct_message, reply
from bot.tlp import TLP
from storage import alerts_repo, digests_repo, feedback_repo, outbox_repo, tips_repo
from storage.audit_repo import append_audit

NOT_RECEIVED = "You can give feedback only on alerts your organisation received."
MAX_COMMENT = 1000
# Markings under which a recipient's comment doesn't travel on to the officer.
_COMMENT_STAYS = {TLP.RED, TLP.AMBER_STRICT}

_USEFUL = {"useful", "yes", "👍", ":+1:", ":thumbsup:", "+1"}
_NOT_USEFUL = {"not-useful", "notuseful", "not_useful", "no", "👎", ":-1:", ":thumbsdown:", "-1"}
# Skin tones and the emoji presentation selector: 👍🏽 is still 👍.
_EMOJI_MODIFIERS = dict.fromkeys([*range(0x1F3FB, 0x1F400), 0xFE0F])


@dataclass(frozen=True)
class Verdict:
    useful: bool
    comment: str | None


def parse_verdict(text: str, usage: str) -> Verdict:
    """``useful great catch`` -> Verdict(True, "great catch"). Raises UserError."""
    words = text.split(None, 1)
    if not words:
        raise UserError(f"Was it useful? Usage: {usage}")
    first = _normal(words[0])
    rest = words[1] if len(words) > 1 else ""
    if first == "not":
        second, _, rest = rest.partition(" ")
        first = "not-" + _normal(second)
    if first in _USEFUL:
        useful = True
    elif first in _NOT_USEFUL:
        useful = False
    else:
        raise UserError(
            f"“{words[0][:30]}” is not an answer I know. Say useful or not-useful (yes/no and "
            f"👍/👎 work too), then a comment if you like. Usage: {usage}"
        )
    comment = rest.strip() or None
    if comment is not None and len(comment) > MAX_COMMENT:
        raise UserError(f"Please keep the comment under {MAX_COMMENT:,} characters.")
    return Verdict(useful, comment)


def _normal(word: str) -> str:
    word = word.lower().translate(_EMOJI_MODIFIERS)
    # "useful," and "no." are the same answers; Slack's ":+1:" keeps its colons.
    return word if word in _USEFUL | _NOT_USEFUL else word.rstrip(".,;:!")


async def give_feedback(core: Core, to: ReplyTo, alert_id: int, verdict: Verdict) -> None:
    now = core.clock.now()
    policy = core.policy
    async with core.transaction() as conn:
        alert = await alerts_repo.get_alert(conn, alert_id)
        if alert is None:
            raise UserError(NOT_RECEIVED)
        # A person's own copy (TLP:RED) counts only in a direct message: a comment typed in
        # a channel would show a RED alert's subject to everyone there.
        here = {to.channel, to.actor} if to.is_dm else {to.channel}
        received = await _received_here(conn, alert, here)
        if received is None:
            raise UserError(NOT_RECEIVED)
        if alert.state is AlertState.RETRACTED:
            raise UserError(
                f"{alert.ref} was retracted, so there is nothing to rate. Thank you all the same."
            )
        partner_id = received or None
        await feedback_repo.add_feedback(
            conn,
            feedback_repo.Feedback(
                alert_id=alert.id,
                actor=to.actor,
                channel=to.channel,
                partner_id=partner_id,
                useful=verdict.useful,
                comment=verdict.comment,
                at=now,
            ),
        )
        await append_audit(
            conn,
            at=now,
            actor=to.actor,
            action="alert.feedback",
            subject=alert.ref,
            details={
                "partner": partner_id,
                "channel": to.channel,
                "useful": verdict.useful,
                "comment": verdict.comment,
            },
        )
        comment_stays = verdict.comment is not None and alert.tlp in _COMMENT_STAYS
        tip = await tips_repo.get_tip(conn, alert.tip_id)
        if tip is not None and tip.officer:
            partner = policy.partner(partner_id) if partner_id else None
            name = partner.name if partner else partner_id
            who = f"A partner ({name})" if name else "A partner"
            found = "found" if verdict.useful else "did not find"
            said = f": {verdict.comment}" if verdict.comment and not comment_stays else "."
            await direct_message(
                conn,
                tip.officer,
                f"{who} {found} your tip {tip.ref} (alert {alert.ref}) useful{said}",
                now=now,
            )
        thanks = (
            f"Thank you — your feedback on {alert.ref} reached the fusion center and the "
            "officer who reported it"
        )
        if comment_stays:
            thanks += f" (your comment stays with the center: the alert is {alert.tlp.label})"
        await reply(conn, to, thanks + ".", now=now)


async def _received_here(conn: AsyncConnection, alert: Alert, here: set[str]) -> str | None:
    """The partner whose copy arrived here, "" if one arrived but its partner is unknown,
    None if none did: a copy of its own, or a digest that listed it."""
    rows = await outbox_repo.rows_for(conn, alert_key(alert.id))
    for row in rows:
        if row.op == "post" and row.state == outbox_repo.SENT and row.target in here:
            return delivered_for(alert, row.target) or ""
    for item in await digests_repo.items_for_alert(conn, alert.id):
        if item.target not in here or not (item.digest_key or "").startswith("digest:"):
            continue
        status = await outbox_repo.post_status(conn, item.digest_key or "", item.target)
        if status is not None and status[0] == outbox_repo.SENT:
            return item.partner_id
    return None
