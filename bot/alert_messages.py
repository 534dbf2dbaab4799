"""What people see of an alert: the partners' copy, the analyst's "who will see this"
preview, and the dissemination log shown by !alert."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.alerts import Alert, AlertState, Timing, goes_to_digest
from bot.cards import local_time
from bot.categories import CATEGORIES
from bot.digests import next_fire
from bot.dissemination import Plan, PlannedDelivery
from bot.messages import Button, Message, MessageField
from bot.policy import Partner, Policy
from bot.tips import Tip, TipNote
from bot.tlp import TLP
from bot.wording import counted
from storage.alerts_repo import Retraction
from storage.digests_repo import DigestItem
from storage.feedback_repo import Feedback
from storage.outbox_repo import FAILED, HELD, SENT, SUPERSEDED, OutboxRow

DIGEST_NOTE = "in its next digest"
EVERY_DIGEST = "in each partner's next digest"


def alert_title(tip: Tip, given: str | None) -> str:
    if given:
        return given
    return _short(tip.summary, 120)


def alert_body(tip: Tip) -> str:
    """The tip's facts, without who filed it: partners need the activity, not the source."""
    lines = [tip.summary]
    if tip.location:
        lines.append(f"Location: {tip.location}")
    if tip.when:
        lines.append(f"When: {tip.when}")
    if tip.details:
        lines.append(tip.details)
    return "\n".join(lines)


def partner_copy(alert: Alert, *, updated: tuple[datetime, ZoneInfo] | None = None) -> Message:
    """One delivered copy; the TLP banner and caveats travel with it on every platform.

    ``updated`` (when, in which zone) marks a copy edited in place by !update: a reader
    who saw the first text must be able to tell that this one replaces it.
    """
    footer = feedback_hint(alert.ref)
    header = f"{alert.ref} · {alert.title}"
    if updated is not None:
        when, tz = updated
        header += " (updated)"
        footer = f"Updated {local_time(when, tz)}: this text replaces the earlier one.\n" + footer
    return Message(
        header=header,
        text=alert.body,
        fields=_facts(alert.category, alert.region),
        tlp=alert.tlp,
        caveats=list(alert.caveats),
        footer=footer,
        # One click for a partner to say whether it helped; the core checks, as for the
        # typed command, that the clicker's channel received this alert.
        buttons=[
            Button(label="Useful", command=f"feedback {alert.ref} useful", style="primary"),
            Button(label="Not useful", command=f"feedback {alert.ref} not-useful"),
        ],
    )


def feedback_hint(ref: str) -> str:
    return f"Feedback: !feedback {ref} useful|not-useful [comment]"


def retraction_copy(alert: Alert, reason: str | None, when: datetime, tz: ZoneInfo) -> Message:
    """What a delivered copy becomes when the alert is retracted: the handling marking
    stays (the notice is about a marked product, and says so), the content goes. Without
    ``reason`` for a place the policy no longer clears: it learns of nothing new."""
    why = f"Retracted: {reason.rstrip('.')}." if reason else "Retracted."
    return Message(
        header=f"{alert.ref} RETRACTED",
        # The header names the alert and says RETRACTED; the text need not say it again.
        text=f"{why} Do not act on it; delete local copies.",
        tlp=alert.tlp,
        caveats=list(alert.caveats),
        footer=f"Retracted {local_time(when, tz)} by the fusion center.",
    )


def withdrawal_header(ref: str) -> str:
    """The withdrawal notice's header: how ``!alert`` recognises a copy that holds it."""
    return f"{ref} WITHDRAWN"


def withdrawal_copy(alert: Alert, when: datetime, tz: ZoneInfo) -> Message:
    """What a delivered copy becomes when an update finds its place no longer cleared
    for the alert (a reload changed the policy): the marking stays, the content goes, and
    the new text never reaches it."""
    return Message(
        header=withdrawal_header(alert.ref),
        text=(
            f"{alert.ref} WITHDRAWN from here: under the fusion center's current policy this "
            "place is no longer cleared for it. Do not act on it; delete local copies."
        ),
        tlp=alert.tlp,
        caveats=list(alert.caveats),
        footer=f"Withdrawn {local_time(when, tz)} by the fusion center.",
    )


def preview_message(
    policy: Policy,
    tip: Tip,
    *,
    title: str,
    body: str,
    tlp: TLP,
    caveats: Sequence[str],
    plan: Plan,
    timing: Timing,
    send_at: datetime | None,
    footer: str,
    now: datetime,
    note: str | None = None,
) -> Message:
    fields = [MessageField(label="Note", value=note)] if note else []
    fields += _facts(tip.category, tip.region)
    # A copy for a digest waits for the partner's next one after the alert's release.
    released = send_at if timing == "at" and send_at is not None else now
    fields += _plan_fields(policy, plan, reached_label="Will reach", timing=timing, at=released)
    fields.append(
        MessageField(label="Timing", value=timing_text(timing, send_at, policy.center.tz))
    )
    return Message(
        header=f"Who will see this: alert from {tip.ref} · {title}",
        text=body,
        fields=fields,
        tlp=tlp,
        caveats=list(caveats),
        footer=footer,
    )


def timing_text(timing: Timing, send_at: datetime | None, tz: ZoneInfo) -> str:
    """When the copies go, in the words the release confirmation uses."""
    if timing == "digest":
        return EVERY_DIGEST
    if timing == "at" and send_at is not None:
        return f"at {send_time(send_at, tz)}; the audience is planned again at that time"
    return "now"


def send_time(when: datetime, tz: ZoneInfo) -> str:
    """A scheduled time as the center's clock shows it. Of a wall time that happens twice
    (the clocks going back) the zone alone tells which; this says it in words too."""
    local = when.astimezone(tz)
    other = local.replace(fold=1 - local.fold)
    if other.utcoffset() == local.utcoffset():
        return local_time(when, tz)
    which = "first" if local.fold == 0 else "second"
    return (
        f"{local_time(when, tz)} (the {which} {local:%H:%M} that night: the clocks go back an hour)"
    )


def unanswered_question(tip: Tip, question: TipNote, actor: str, tz: ZoneInfo) -> str:
    """The analyst's question the officer hasn't answered yet, for a release that doesn't wait."""
    whose = "your" if question.actor == actor else f"{question.actor}'s"
    return (
        f"{whose} question to the officer on {tip.ref} is still unanswered "
        f"(asked {local_time(question.at, tz)}: “{_short(question.text, 80)}”)"
    )


def alert_log_message(
    policy: Policy,
    alert: Alert,
    posts: Sequence[OutboxRow],
    tz: ZoneInfo,
    *,
    feedback: Sequence[Feedback] = (),
    retraction: Retraction | None = None,
    digest_items: Sequence[DigestItem] = (),
    withdrawn: Mapping[str, datetime] | None = None,
) -> Message:
    """The alert with its markings and where it went: the outbox says what was delivered
    and when; the plan stored at release says who was left out and why."""
    fields = [MessageField(label="Source", value=f"T-{alert.tip_id}")]
    fields += _facts(alert.category, alert.region)
    fields.append(
        MessageField(
            label="Audience",
            value="every cleared, subscribed partner"
            if alert.audience is None
            else "named: " + ", ".join(alert.audience),
        )
    )
    timing = timing_text(alert.timing, alert.send_at, tz)
    if alert.timing == "at" and alert.send_at is not None and alert.released_at is not None:
        # Its time has come: said in the past tense.
        timing = (
            f"at {send_time(alert.send_at, tz)}; planned again and released "
            f"{local_time(alert.released_at, tz)}"
        )
    fields.append(MessageField(label="Timing", value=timing))
    if alert.released_at is not None:
        fields.append(
            MessageField(
                label="Released",
                value=f"{local_time(alert.released_at, tz)} by {alert.released_by}",
            )
        )
    plan = alert.plan or Plan((), ())
    planned = {d.target: d for d in plan.deliveries}
    withdrawn = withdrawn or {}
    lines = [
        _delivery_line(planned.get(row.target), row, tz, alert, withdrawn.get(row.target))
        for row in posts
    ]
    posted = {row.target for row in posts}
    in_digest = {item.target: item for item in digest_items}
    lines += [
        f"{d.target} ({d.partner_id}) — "
        f"{_unposted_state(policy, alert, d.partner_id, in_digest.get(d.target), tz)}"
        for d in plan.deliveries
        if d.target not in posted
    ]
    # Not "Delivered": the list holds copies waiting, scheduled or withdrawn too.
    fields.append(MessageField(label="Copies", value="\n".join(lines) or "none"))
    fields += _plan_fields(policy, plan, reached_label=None)
    if retraction is not None:
        fields.append(
            MessageField(
                label="Retracted",
                value=f"{local_time(retraction.at, tz)} by {retraction.by}: {retraction.reason}",
            )
        )
    fields.append(MessageField(label="Feedback", value=_feedback_summary(feedback, tz)))
    return Message(
        header=f"{alert.ref} · {alert.title} · {alert.state.value.upper()}",
        text=alert.body,
        fields=fields,
        tlp=alert.tlp,
        caveats=list(alert.caveats),
    )


def _facts(category: str, region: str | None) -> list[MessageField]:
    known = CATEGORIES.get(category)
    fields = [
        MessageField(label="Category", value=f"{known.code} — {known.label}" if known else category)
    ]
    if region:
        fields.append(MessageField(label="Region", value=region))
    return fields


def _plan_fields(
    policy: Policy,
    plan: Plan,
    *,
    reached_label: str | None,
    timing: Timing = "now",
    at: datetime | None = None,
) -> list[MessageField]:
    fields: list[MessageField] = []
    if reached_label is not None:
        reach = [
            _planned_line(policy, d, goes_to_digest(d, timing), at=at) for d in plan.deliveries
        ]
        fields.append(MessageField(label=reached_label, value="\n".join(reach) or "no partner"))
    if plan.shared:
        fields.append(
            MessageField(
                label="Also reaches",
                value="\n".join(
                    f"{s.partner_id} through {s.target} (delivered for {s.via})"
                    for s in plan.shared
                ),
            )
        )
    if plan.excluded:
        fields.append(
            MessageField(
                label="Not sent to",
                value="\n".join(f"{e.partner_id} — {e.reason}" for e in plan.excluded),
            )
        )
    if plan.withheld:
        fields.append(
            MessageField(
                label="Withheld channels",
                value="\n".join(f"{w.target} ({w.partner_id}) — {w.reason}" for w in plan.withheld),
            )
        )
    return fields


def _planned_line(
    policy: Policy, delivery: PlannedDelivery, in_digest: bool, *, at: datetime | None
) -> str:
    partner = policy.partner(delivery.partner_id)
    name = f"{partner.name} ({partner.id})" if partner else delivery.partner_id
    how = "direct message" if delivery.kind == "dm" else "channel"
    if partner is not None and delivery.target in partner.internal_channels:
        how = "internal channel"
    line = f"{delivery.target} — {name}, {how}"
    if in_digest:
        line += f" ({_digest_note(policy, partner, at)})"
    return line


def _digest_note(policy: Policy, partner: Partner | None, after: datetime | None) -> str:
    """``in its next digest, 2026-12-05 07:00 EST``: an analyst approving at night must
    see that a digest copy waits for the morning."""
    if partner is None or after is None:
        return DIGEST_NOTE
    fire = next_fire(partner.digest, policy.center.tz, after=after)
    return DIGEST_NOTE if fire is None else f"{DIGEST_NOTE}, {local_time(fire, policy.center.tz)}"


def _unposted_state(
    policy: Policy, alert: Alert, partner_id: str, item: DigestItem | None, tz: ZoneInfo
) -> str:
    """Where a copy stands that has no message of its own: digest or schedule."""
    retracted = alert.state is AlertState.RETRACTED
    if item is not None:
        if item.digest_key is None:
            if retracted:
                return "withheld: retracted before the partner's digest, so it never goes"
            partner = policy.partner(partner_id)
            fire = partner and next_fire(partner.digest, tz, after=item.queued_at)
            due = f", due {local_time(fire, tz)}" if fire else ""
            return f"waiting for the partner's next digest{due}"
        if item.digest_key.startswith("digest:"):
            period = datetime.fromisoformat(item.digest_key.split(":", 2)[2])
            return f"in the digest of {local_time(period, tz)}"
        return "dropped from the digest (partner no longer in the policy)"
    if alert.send_at is not None and alert.released_at is None:
        if retracted:
            return "cancelled: retracted before its time"
        return f"scheduled for {send_time(alert.send_at, tz)}"
    return "not sent"


def _delivery_line(
    delivery: PlannedDelivery | None,
    row: OutboxRow,
    tz: ZoneInfo,
    alert: Alert,
    withdrawn_at: datetime | None,
) -> str:
    who = f" ({delivery.partner_id})" if delivery else ""
    if row.state == SENT and row.sent_at is not None:
        state = f"sent {local_time(row.sent_at, tz)}"
        # What the partner reads there now.
        if withdrawn_at is not None:
            state += f", withdrawn {local_time(withdrawn_at, tz)} (the policy no longer clears it)"
        elif alert.state is AlertState.RETRACTED:
            state += ", now the retraction notice"
        elif alert.updated_since_release and alert.updated_at is not None:
            state += f", updated {local_time(alert.updated_at, tz)}"
    elif row.state == FAILED:
        state = f"failed: {row.last_error or 'unknown error'}"
    elif row.state == HELD:
        state = f"held: {row.last_error or 'waiting for the platform'}"
    elif row.state == SUPERSEDED:
        state = f"withdrawn: {row.last_error or 'never sent'}"
    else:
        state = f"pending since {local_time(row.created_at, tz)}"
    return f"{row.target}{who} — {state}"


def _feedback_summary(feedback: Sequence[Feedback], tz: ZoneInfo) -> str:
    """Counts by person's latest answer (someone who changes their mind counts once),
    then every answer as given."""
    if not feedback:
        return "none yet"
    latest = {f.actor: f for f in feedback}
    useful = sum(f.useful for f in latest.values())
    people = len(latest)
    lines = [
        f"{useful} useful, {people - useful} not useful "
        f"({counted(people, 'person', 'people')}, each by their latest answer)"
    ]
    for f in feedback:
        verdict = "useful" if f.useful else "not useful"
        line = f"{f.partner_id or 'unknown partner'} ({f.actor}) {verdict}, {local_time(f.at, tz)}"
        line += f": {f.comment}" if f.comment else ""
        if latest[f.actor] is not f:
            line += " (changed later)"
        lines.append(line)
    return "\n".join(lines)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
