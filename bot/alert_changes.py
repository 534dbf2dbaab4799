"""Changing an alert after release: !update replaces its text, !retract withdraws it. Either
way every copy that went out is edited in place, so no partner keeps acting on a version
the center no longer stands behind.

Decisions (see also DESIGN.md):

- Only the analyst who released the alert, or a supervisor, may change it: they answer
  for its content. A scheduled alert not yet released belongs to whoever approved it.
- A copy still waiting in the outbox leaves with the new content (the outbox coalesces the
  edit into it), so a retracted alert's text never goes out after the retraction. A copy
  that failed for good never arrived and is left alone.
- Retracting an alert that nothing has been sent for yet (scheduled) just cancels it: its
  waiting copies are withdrawn rather than turned into notices about something nobody saw.
- Digests that listed the alert are edited too (bot.digests re-renders them); copies still
  waiting for a digest are skipped there once the alert is no longer released.
- An update carries new content, so it goes only where the policy in force clears the
  alert now: a reload may have lowered a partner's clearance or given a channel to another
  partner since release. A copy already delivered there becomes a withdrawal notice (the
  marking stays, the content goes); one not sent yet is cancelled; the analyst is told.
- The retraction notice keeps the TLP banner and caveats: it is itself about a marked
  product, and partners file and purge by marking.
- An update replaces the alert's narrative; its fact lines (``Location: …``, ``When: …``,
  as the release wrote them from the tip) stay unless the new text gives them again, so an
  analyst correcting a sentence doesn't silently drop where and when it happened.
- The tip's outcome says its alert was retracted (or cancelled before it went out), on the
  review card and in !status, so nobody reads "released as alert A-1" as still standing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.addresses import spell
from bot.alert_messages import partner_copy, retraction_copy, send_time, withdrawal_copy
from bot.alerts import (
    Alert,
    AlertState,
    ClearedNow,
    alert_key,
    alert_ref,
    cleared_now,
    delivered_for,
)
from bot.card_render import refresh_card
from bot.cards import local_time
from bot.core import Core
from bot.digests import refresh_digests_for
from bot.errors import UserError
from bot.lifecycle import Actor, Refused
from bot.messages import Message
from bot.replies import ReplyTo, reply
from bot.tlp import TLP
from bot.triage import actor_for, tell_about
from bot.wording import counted
from storage import alerts_repo, digests_repo, outbox_repo, tips_repo
from storage.audit_repo import append_audit

MAX_TEXT = 4000


@dataclass(frozen=True)
class Change:
    alert: Alert
    # Places whose copy is being edited in place (or leaves with the new content).
    copies: tuple[str, ...]


async def update_alert(core: Core, to: ReplyTo, alert_id: int, text: str) -> Change:
    """Replace the alert's text (the title stays) and edit every copy in place."""
    body = _required(text, f"{spell(to.actor, 'update')} {alert_ref(alert_id)} <the new text>")
    now = core.clock.now()
    actor = actor_for(core, to.actor)
    async with core.transaction() as conn:
        alert = await _load(conn, alert_id)
        _check_may_change(alert, actor, "update")
        if alert.state is AlertState.RETRACTED:
            raise Refused(
                f"{alert.ref} was retracted and can't be updated. If there is new information, "
                f"file it as a new tip that mentions T-{alert.tip_id}, and approve that."
            )
        previous_version = alert.version
        body = with_facts_kept(alert.body, body)
        await alerts_repo.save_body(conn, alert, body, now=now)
        tz = core.policy.center.tz
        cleared = cleared_now(core.policy, alert)
        withdrawn = await _withdraw_uncleared(
            conn, alert, cleared, withdrawal_copy(alert, now, tz), now=now
        )
        copy = partner_copy(alert, updated=(now, tz))
        edited = await _edit_copies(conn, alert, copy, now=now, skip=frozenset(withdrawn.all))
        copies = edited.all
        digests = await refresh_digests_for(core, conn, alert.id)
        await append_audit(
            conn,
            at=now,
            actor=actor.address,
            action="alert.updated",
            subject=alert.ref,
            details={
                "from_version": previous_version,
                "to_version": alert.version,
                "body": body,
                "copies": list(copies),
                "digests": list(digests.edited),
                "withdrawn": [*withdrawn.all, *digests.withdrawn],
            },
        )
        elsewhere = withdrawn.all or digests.edited or digests.withdrawn
        if copies or (alert.state is AlertState.RELEASED and not elsewhere):
            said = _copies_said(edited, leaves_as="with the new text")
        elif elsewhere:
            said = ""  # what did happen is said below
        else:
            said = "Nothing had been sent yet; it goes out with the new text."
        if digests.edited:
            said += (
                f" {counted(len(digests.edited), 'digest')} listing it edited "
                f"({', '.join(digests.edited)})."
            )
        said += _withdrawals_said(alert, withdrawn, digests.withdrawn)
        await reply(conn, to, f"{alert.ref} updated. {said.strip()}", now=now)
    return Change(alert, copies)


async def retract_alert(core: Core, to: ReplyTo, alert_id: int, reason: str) -> Change:
    """Withdraw the alert: every copy that went out becomes a retraction notice."""
    reason = _required(reason, f"{spell(to.actor, 'retract')} {alert_ref(alert_id)} <reason>")
    now = core.clock.now()
    actor = actor_for(core, to.actor)
    async with core.transaction() as conn:
        alert = await _load(conn, alert_id)
        _check_may_change(alert, actor, "retract")
        if alert.state is AlertState.RETRACTED:
            retraction = await alerts_repo.get_retraction(conn, alert.id)
            by = f" by {retraction.by}" if retraction else ""
            raise Refused(f"{alert.ref} was already retracted{by}; nothing more to do.")
        was = alert.state
        await alerts_repo.mark_retracted(conn, alert, by=actor.address, reason=reason, now=now)
        withdrawn = 0
        if was is not AlertState.RELEASED:
            withdrawn = await alerts_repo.cancel_unsent_copies(conn, alert_key(alert.id))
        await _note_on_tip(core, conn, alert, reason, released=was is AlertState.RELEASED)
        tz = core.policy.center.tz
        # Places a reload no longer clears get the notice without the reason (free text
        # under the alert's marking), and a copy not sent there yet never goes.
        uncleared = await _withdraw_uncleared(
            conn,
            alert,
            cleared_now(core.policy, alert),
            retraction_copy(alert, None, now, tz),
            now=now,
        )
        notice = retraction_copy(alert, reason, now, tz)
        edited = await _edit_copies(conn, alert, notice, now=now, skip=frozenset(uncleared.all))
        copies = (*edited.all, *uncleared.delivered)
        held_for_digests = await _waiting_for_digests(conn, alert)
        digests = await refresh_digests_for(core, conn, alert.id)
        await append_audit(
            conn,
            at=now,
            actor=actor.address,
            action="alert.retracted",
            subject=alert.ref,
            details={
                "reason": reason,
                "was": was.value,
                "copies": list(copies),
                "digests": [*digests.edited, *digests.withdrawn],
                "withdrawn_unsent": withdrawn + len(uncleared.waiting),
            },
        )
        if was is AlertState.RELEASED or copies:
            said = _copies_said(
                Edited((*edited.delivered, *uncleared.delivered), edited.waiting),
                leaves_as="as the notice",
            )
            if uncleared.waiting:
                said += (
                    f" {counted(len(uncleared.waiting), 'copy')} not sent yet to a place the "
                    f"policy no longer clears won't go ({', '.join(uncleared.waiting)})."
                )
            reached = [*digests.edited, *digests.withdrawn]
            if reached:
                said += (
                    f" {counted(len(reached), 'digest')} listing it edited ({', '.join(reached)})."
                )
            if held_for_digests:
                said += (
                    f" {counted(len(held_for_digests), 'copy')} waiting for a digest won't go "
                    f"({', '.join(held_for_digests)})."
                )
        else:
            said = "Nothing had been sent yet, so it is simply cancelled."
        await reply(conn, to, f"{alert.ref} retracted. {said}", now=now)
    return Change(alert, copies)


_FACT_LABELS = ("Location", "When")
# A fact given as a field, the way a tip's are typed: "| location: …", "; when: …" or on a
# line of its own (one line is all a Slack command or the console has).
_FACT_FIELD = re.compile(r"(?:^|[|;\n])[ \t]*(location|when)[ \t]*:[ \t]*([^|;\n]*)", re.IGNORECASE)


def with_facts_kept(old_body: str, new_text: str) -> str:
    """The new narrative with its facts as the alert's fact lines, followed by the old
    body's fact lines for the facts it doesn't give. A fact it mentions in passing
    ("… Location: east gate") replaces the old line too: partners must never read two
    different locations."""
    given: dict[str, str] = {}

    def take(match: re.Match[str]) -> str:
        given[match[1].capitalize()] = match[2].strip()
        return "\n"

    narrative = "\n".join(
        line.strip() for line in _FACT_FIELD.sub(take, new_text).splitlines() if line.strip()
    )
    mentioned = {
        label for label in _FACT_LABELS if re.search(rf"\b{label}\s*:", narrative, re.IGNORECASE)
    }
    old_facts = {
        line.split(":", 1)[0]: line
        for line in old_body.splitlines()
        if line.startswith(tuple(f"{label}:" for label in _FACT_LABELS))
    }
    facts = []
    for label in _FACT_LABELS:
        if given.get(label):
            facts.append(f"{label}: {given[label]}")
        elif label in old_facts and label not in given.keys() | mentioned:
            facts.append(old_facts[label])
    return "\n".join([narrative, *facts])


async def _waiting_for_digests(conn: AsyncConnection, alert: Alert) -> list[str]:
    """Places whose copy was still waiting for the partner's next digest."""
    items = await digests_repo.items_for_alert(conn, alert.id)
    return [item.target for item in items if item.digest_key is None]


async def _note_on_tip(
    core: Core, conn: AsyncConnection, alert: Alert, reason: str, *, released: bool
) -> None:
    """The tip's outcome and card say what became of its alert."""
    tip = await tips_repo.get_tip(conn, alert.tip_id, for_update=True)
    if tip is None or tip.purged_at is not None:
        return
    now = core.clock.now()
    tz = core.policy.center.tz
    what = "retracted" if released else "cancelled before it went out"
    if alert.tlp in (TLP.RED, TLP.AMBER_STRICT):
        # The officer is not a recipient: the reason may say what the marking keeps among
        # them (as with partners' feedback, bot.feedback). It stays in the alert's record.
        reason = f"the reason stays with the center ({alert.tlp.label})"
    if released or alert.send_at is None:
        tip.reason = f"released as alert {alert.ref}; {what} {local_time(now, tz)}: {reason}"
    else:
        tip.reason = (
            f"approved as alert {alert.ref}, scheduled for {send_time(alert.send_at, tz)}; "
            f"cancelled {local_time(now, tz)}: {reason}"
        )
    await tips_repo.save_tip(conn, tip, now=now)
    await refresh_card(core, conn, tip)
    # The officer was told the tip became an alert; they hear when it no longer stands.
    await tell_about(
        conn,
        tip,
        tip.officer,
        f"Alert {alert.ref}, made from your tip {tip.ref}, was {what}: {reason}",
        now,
    )


async def _load(conn: AsyncConnection, alert_id: int) -> Alert:
    alert = await alerts_repo.get_alert(conn, alert_id, for_update=True)
    if alert is None or alert.state is AlertState.DRAFT:
        # A draft exists only inside the transaction that releases it.
        raise UserError(
            f"There is no {alert_ref(alert_id)}. Alert ids are in the release answer "
            "and on every copy."
        )
    return alert


def _check_may_change(alert: Alert, actor: Actor, verb: str) -> None:
    owner = alert.released_by or alert.created_by
    if actor.is_supervisor or actor.address == owner:
        return
    raise Refused(
        f"Only {owner}, who released {alert.ref}, or a supervisor may {verb} it: ask one of "
        "them to."
    )


async def _withdraw_uncleared(
    conn: AsyncConnection, alert: Alert, cleared: ClearedNow, notice: Message, *, now: datetime
) -> Edited:
    """Copies in places the policy no longer clears for the alert (or that no longer reach
    the partner they were delivered for): one delivered becomes ``notice``, one not sent
    yet is cancelled (nobody there saw it)."""
    key = alert_key(alert.id)
    delivered: list[str] = []
    cancelled: list[str] = []
    for target in await outbox_repo.message_targets(conn, key):
        if cleared.allows(target, delivered_for(alert, target)):
            continue
        status = await outbox_repo.post_status(conn, key, target)
        if status is None or status[0] in (outbox_repo.FAILED, outbox_repo.SUPERSEDED):
            continue
        if status[0] in (outbox_repo.PENDING, outbox_repo.HELD):
            await alerts_repo.cancel_unsent_copies(
                conn, key, target=target, why="the policy no longer clears it here"
            )
            cancelled.append(target)
        else:
            await outbox_repo.enqueue_edit(
                conn, target=target, message_key=key, message=notice, now=now
            )
            delivered.append(target)
    return Edited(tuple(delivered), tuple(cancelled))


def _withdrawals_said(alert: Alert, copies: Edited, digests: tuple[str, ...]) -> str:
    if not (copies.all or digests):
        return ""
    said = f" Withdrawn, since the policy no longer clears them for {alert.ref}:"
    if copies.delivered or digests:
        said += f" {', '.join((*copies.delivered, *digests))} (they now say so)"
    if copies.waiting:
        said += ";" if copies.delivered or digests else ""
        said += f" {', '.join(copies.waiting)} (not sent yet: won't go)"
    return said + "."


@dataclass(frozen=True)
class Edited:
    """The copies a change reached: delivered ones edited in place, and ones not sent yet,
    which leave in the new form."""

    delivered: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return self.delivered + self.waiting


async def _edit_copies(
    conn: AsyncConnection,
    alert: Alert,
    message: Message,
    *,
    now: datetime,
    skip: frozenset[str] = frozenset(),
) -> Edited:
    """Edit every copy of the alert that went out or may still go out (but ``skip``)."""
    key = alert_key(alert.id)
    delivered: list[str] = []
    waiting: list[str] = []
    for target in await outbox_repo.message_targets(conn, key):
        if target in skip:
            continue
        status = await outbox_repo.post_status(conn, key, target)
        if status is None or status[0] in (outbox_repo.FAILED, outbox_repo.SUPERSEDED):
            continue  # never arrived, never will: nothing there to change
        if status[0] == outbox_repo.HELD:
            # An edit queued behind a held post would wait for it forever; the held post
            # itself must carry the new content when it is let go.
            await alerts_repo.rewrite_held_copy(conn, key, target, message)
        else:
            await outbox_repo.enqueue_edit(
                conn, target=target, message_key=key, message=message, now=now
            )
        sent = status[0] in (outbox_repo.SENT, outbox_repo.SENDING)
        (delivered if sent else waiting).append(target)
    return Edited(tuple(delivered), tuple(waiting))


def _copies_said(edited: Edited, *, leaves_as: str) -> str:
    if not edited.all:
        return "No copy had gone out, so there is nothing to edit."
    said = []
    if edited.delivered:
        n = len(edited.delivered)
        said.append(f"{counted(n, 'copy')} edited in place ({', '.join(edited.delivered)})")
    if edited.waiting:
        n = len(edited.waiting)
        go = "goes" if n == 1 else "go"
        said.append(
            f"{counted(n, 'copy')} not sent yet {go} out {leaves_as} ({', '.join(edited.waiting)})"
        )
    return "; ".join(said) + "."


def _required(text: str, usage: str) -> str:
    text = text.strip()
    if not text:
        raise UserError(f"Please add the text. Usage: {usage}")
    if len(text) > MAX_TEXT:
        raise UserError(
            f"That is {len(text):,} characters; keep it under {MAX_TEXT:,}. Usage: {usage}"
        )
    return text
