"""Approving a tip releases an alert: first a preview of who will see it, then — on
confirm — the approval, the alert and its deliveries in one transaction.

Decisions (see also DESIGN.md):

- Default marking is TLP:AMBER with no caveats. A forgotten ``tlp:`` must never make an
  alert public (CLEAR/GREEN), and fusion-center products normally go to law-enforcement
  partners on a need-to-know basis, which is what AMBER means; AMBER+STRICT or RED would
  silently cut most partners off instead.
- Without ``to:`` the audience is every cleared, subscribed partner — the same set
  ``to:all`` names, because need-to-know applies either way. So the supervisor rule for
  "all partners now" covers both spellings; an analyst names the partners instead.
- Timing ``now`` (the default) follows each partner's delivery mode: ``immediate``
  partners get the alert at once, ``digest`` partners in their next digest. ``digest``
  puts every channel copy into the partners' digests; ``at:<time>`` keeps the alert
  scheduled and releases it at that time as ``now`` would, planning the audience again
  with the policy then in force. TLP:RED direct messages never wait in a digest.
- An alert that would reach nobody is not released: that is nearly always a wrong
  ``to:``, TLP or caveat, and the preview says who was left out and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.addresses import spell
from bot.alert_dispatch import dispatch
from bot.alert_messages import (
    alert_body,
    alert_title,
    preview_message,
    send_time,
    unanswered_question,
)
from bot.alerts import Alert, Timing, goes_to_digest
from bot.audit import ALERT_CREATED
from bot.core import Core
from bot.dissemination import AlertSpec, Plan, plan_dissemination
from bot.errors import UserError
from bot.lifecycle import Actor, Refused, Verb, next_state
from bot.messages import Button, Message
from bot.policy import Policy
from bot.replies import ReplyTo, direct_message, reply
from bot.tips import Tip, TipState
from bot.tlp import TLP
from bot.triage import actor_for, decide, load_tip, record_transition
from bot.wording import counted
from storage import alert_schedule_repo, alerts_repo, tips_repo
from storage.audit_repo import append_audit

DEFAULT_TLP = TLP.AMBER


@dataclass(frozen=True)
class AlertRequest:
    """``!approve`` as parsed: the analyst's choices for the alert."""

    tip_id: int
    tlp: TLP = DEFAULT_TLP
    caveats: tuple[str, ...] = ()
    # Partner ids named with to:, or None for every cleared, subscribed partner (to:all).
    to: tuple[str, ...] | None = None
    timing: Timing = "now"
    send_at: datetime | None = None
    title: str | None = None


@dataclass(frozen=True)
class Proposal:
    """What confirming would do, computed the same way for the preview and the release."""

    tip: Tip
    request: AlertRequest
    title: str
    body: str
    plan: Plan
    # Why a supervisor must release it (None when an analyst may).
    supervisor_reason: str | None


def propose(policy: Policy, tip: Tip, request: AlertRequest, actor: Actor) -> Proposal:
    """Check everything that doesn't need the database. Raises UserError saying why not."""
    next_state(tip, Verb.APPROVE, actor)  # the lifecycle decides who may approve, and when
    spec = AlertSpec(
        tlp=request.tlp,
        caveats=frozenset(request.caveats),
        category=tip.category,
        region=tip.region,
        to=request.to,
    )
    return Proposal(
        tip=tip,
        request=request,
        title=alert_title(tip, request.title),
        body=alert_body(tip),
        plan=plan_dissemination(policy, spec),
        supervisor_reason=supervisor_reason(request),
    )


def supervisor_reason(request: AlertRequest) -> str | None:
    if request.tlp is TLP.RED:
        return "Releasing TLP:RED"
    if request.to is None and request.timing == "now":
        return "Sending to all partners now"
    return None


async def preview(core: Core, to: ReplyTo, request: AlertRequest, confirm_command: str) -> None:
    """Show who will see the alert. Changes nothing but the answer to the analyst."""
    actor = actor_for(core, to.actor)
    async with core.db.read() as conn:
        tip = await load_tip(conn, request.tip_id)
        note = await _pending_question(conn, core.policy, tip, actor)
    proposal = propose(core.policy, tip, request, actor)
    footer = _preview_footer(core.policy, proposal, actor, confirm_command)
    message = preview_message(
        core.policy,
        tip,
        title=proposal.title,
        body=proposal.body,
        tlp=request.tlp,
        caveats=request.caveats,
        plan=proposal.plan,
        timing=request.timing,
        send_at=request.send_at,
        footer=footer,
        now=core.clock.now(),
        note=note,
    )
    if _may_send(proposal, actor):
        # The same command as the footer spells out, one click away where buttons exist.
        button = Button(
            label="Confirm and send", command=_button_command(confirm_command), style="primary"
        )
        message = message.model_copy(update={"buttons": [button]})
    await _answer(core, to, message)


async def release(core: Core, to: ReplyTo, request: AlertRequest, confirm_command: str) -> Alert:
    """Approve the tip and send the alert to exactly the planned targets, all or nothing."""
    now = core.clock.now()
    actor = actor_for(core, to.actor)
    policy = core.policy
    async with core.transaction() as conn:
        tip = await load_tip(conn, request.tip_id, for_update=True)
        # Planned again inside the transaction: the policy or the tip may have changed
        # since the preview, and only what holds now may be sent.
        proposal = propose(policy, tip, request, actor)
        if proposal.supervisor_reason and not actor.is_supervisor:
            raise Refused(_needs_supervisor(policy, proposal, confirm_command))
        if not proposal.plan.deliveries:
            raise UserError(_reaches_nobody(proposal))
        question = await _pending_question(conn, policy, tip, actor)

        alert = await alerts_repo.insert_alert(
            conn,
            tip_id=tip.id,
            title=proposal.title,
            body=proposal.body,
            tlp=request.tlp,
            caveats=list(request.caveats),
            category=tip.category,
            region=tip.region,
            audience=None if request.to is None else list(request.to),
            timing=request.timing,
            send_at=request.send_at,
            created_by=actor.address,
            now=now,
        )
        await append_audit(
            conn,
            at=now,
            actor=actor.address,
            action=ALERT_CREATED,
            subject=alert.ref,
            details={
                "tip": tip.ref,
                "tlp": request.tlp.value,
                "caveats": list(request.caveats),
                "audience": alert.audience,
                "timing": request.timing,
            },
        )

        previous = tip.state
        tip.state = next_state(tip, Verb.APPROVE, actor)
        tip.reason = f"released as alert {alert.ref}"
        decide(tip, actor, now)
        await record_transition(
            core,
            conn,
            tip,
            actor,
            Verb.APPROVE,
            {"from": previous.value, "to": tip.state.value, "alert": alert.ref},
            now=now,
        )

        plan = proposal.plan
        if request.timing == "at":
            assert request.send_at is not None
            await alert_schedule_repo.mark_scheduled(conn, alert, plan=plan, now=now)
            when = send_time(request.send_at, policy.center.tz)
            await append_audit(
                conn,
                at=now,
                actor=actor.address,
                action="alert.scheduled",
                subject=alert.ref,
                details={"send_at": request.send_at.isoformat(), "targets": list(plan.targets)},
            )
            officer_note = f"it is scheduled for {when}"
            answer = (
                f"{tip.ref} approved as {alert.ref} ({request.tlp.label}), scheduled for {when}. "
                f"The audience is planned again at that time. "
                f"{spell(actor.address, 'retract')} {alert.ref} <reason> cancels it."
            )
        else:
            await release_now(conn, alert, plan, by=actor.address, timing=request.timing, now=now)
            partners = len(plan.partners_reached)
            now_count, digest_count = _counts(plan, request.timing)
            officer_note = "it is on its way to the partners who need it"
            answer = (
                f"{tip.ref} approved and released as {alert.ref} ({request.tlp.label}) to "
                f"{counted(partners, 'partner')}: {counted(now_count, 'delivery')} now, "
                f"{digest_count} in digests. Follow it with {spell(actor.address, 'alert')} "
                f"{alert.ref}."
            )
        if question is not None:
            # Approving without the answer is allowed (a supervisor may have to), never silent.
            answer += f" Note: {question}; the officer is told no answer is needed any more."
            officer_note += "; the question asked about it no longer needs an answer"
        await direct_message(
            conn,
            tip.officer,
            f"Your tip {tip.ref} was approved and became alert {alert.ref}; {officer_note}. "
            "Thank you.",
            now=now,
        )
        await reply(conn, to, answer, now=now)
    return alert


async def _pending_question(
    conn: AsyncConnection, policy: Policy, tip: Tip, actor: Actor
) -> str | None:
    """The question still waiting for the officer's answer, in words, or None."""
    if tip.state is not TipState.NEEDS_INFO:
        return None
    asked = [n for n in await tips_repo.notes_for(conn, tip.id) if n.kind == "ask"]
    if not asked:
        return None
    return unanswered_question(tip, asked[-1], actor.address, policy.center.tz)


async def _answer(core: Core, to: ReplyTo, message: Message) -> None:
    async with core.transaction() as conn:
        await reply(conn, to, message, now=core.clock.now())


def _may_send(proposal: Proposal, actor: Actor) -> bool:
    return bool(proposal.plan.deliveries) and (
        proposal.supervisor_reason is None or actor.is_supervisor
    )


def _button_command(confirm_command: str) -> str:
    """``approve T-1 … confirm``: a button holds the command without its platform's
    spelling (``!approve``, ``/fusion approve``)."""
    words = confirm_command.split()
    while words and words[0].lstrip("!/").lower() != "approve":
        words.pop(0)
    if not words:
        return confirm_command.lstrip("!")
    return " ".join(["approve", *words[1:]])


def _preview_footer(policy: Policy, proposal: Proposal, actor: Actor, confirm_command: str) -> str:
    if not proposal.plan.deliveries:
        return "Nothing has been sent. " + _reaches_nobody(proposal)
    if proposal.supervisor_reason and not actor.is_supervisor:
        return "Nothing has been sent. " + _needs_supervisor(policy, proposal, confirm_command)
    return f"Nothing has been sent yet. To send it: {confirm_command}"


def _needs_supervisor(policy: Policy, proposal: Proposal, confirm_command: str) -> str:
    supervisors = ", ".join(policy.roles.supervisors) or "none is named in the policy"
    text = (
        f"{proposal.supervisor_reason} needs a supervisor. Ask a supervisor "
        f"({supervisors}) to send it with: {confirm_command}"
    )
    reached = [p.id for p in policy.partners if p.id in proposal.plan.partners_reached]
    if proposal.request.to is None and proposal.request.tlp is not TLP.RED and reached:
        text += f" — or name the partners yourself with to:{','.join(reached)}"
    return text


def _reaches_nobody(proposal: Proposal) -> str:
    named = proposal.request.to
    # Partners the analyst left out of to: on purpose are no news; the others are.
    why = "; ".join(
        f"{e.partner_id}: {e.reason}"
        for e in proposal.plan.excluded
        if named is None or e.partner_id in named
    )
    return (
        "This alert would reach no partner, so it can't be sent as it is"
        + (f" ({why})" if why else " (the policy lists no partners)")
        + ". Lower the TLP, drop a caveat or name other partners; or reject the tip if it "
        "should not be shared."
    )


async def release_now(
    conn: AsyncConnection, alert: Alert, plan: Plan, *, by: str, timing: Timing, now: datetime
) -> None:
    """Mark the alert released, audit who gets it and why, and queue every copy."""
    await alerts_repo.mark_released(conn, alert, by=by, plan=plan, now=now)
    await append_audit(
        conn,
        at=now,
        actor=by,
        action="alert.released",
        subject=alert.ref,
        # The audit chain makes this record of who was to get it, and who was left out
        # and why, tamper-evident (28 CFR 23.20(f)).
        details={
            "targets": list(plan.targets),
            "partners": sorted(plan.partners_reached),
            "excluded": {e.partner_id: e.reason for e in plan.excluded},
            "timing": timing,
        },
    )
    await dispatch(conn, alert, plan, timing=timing, now=now)


def _counts(plan: Plan, timing: Timing) -> tuple[int, int]:
    digested = sum(1 for d in plan.deliveries if goes_to_digest(d, timing))
    return len(plan.deliveries) - digested, digested
