"""Alerts as the core sees them: what an approved tip becomes. Plain data; no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from bot.dissemination import (
    AlertSpec,
    Exclusion,
    Plan,
    PlannedDelivery,
    SharedTarget,
    WithheldTarget,
    plan_dissemination,
)
from bot.policy import Policy
from bot.tlp import TLP

Timing = Literal["now", "digest", "at"]


def goes_to_digest(delivery: PlannedDelivery, timing: Timing) -> bool:
    """``digest`` puts every channel copy in a digest; otherwise the partner's own delivery
    mode decides. A direct message (TLP:RED) never waits in a digest."""
    if delivery.kind == "dm":
        return False
    return timing == "digest" or delivery.mode == "digest"


class AlertState(StrEnum):
    DRAFT = "draft"
    # Confirmed with at:, waiting for its time.
    SCHEDULED = "scheduled"
    RELEASED = "released"
    RETRACTED = "retracted"


@dataclass
class Alert:
    id: int
    tip_id: int
    title: str
    body: str
    tlp: TLP
    caveats: list[str]
    category: str
    region: str | None
    # The partner ids named with to:, or None for every cleared, subscribed partner.
    audience: list[str] | None
    timing: Timing
    send_at: datetime | None
    state: AlertState
    created_by: str
    created_at: datetime
    released_by: str | None = None
    released_at: datetime | None = None
    # The dissemination plan as it stood at release: who was to get it, who not and why.
    plan: Plan | None = None
    version: int = 1
    updated_at: datetime | None = None

    @property
    def updated_since_release(self) -> bool:
        """Its text was replaced after it went out (!update); a release itself, or an
        update of a scheduled alert before its time, doesn't count."""
        return (
            self.state is AlertState.RELEASED
            and self.released_at is not None
            and self.updated_at is not None
            and self.updated_at > self.released_at
        )

    @property
    def ref(self) -> str:
        return alert_ref(self.id)


def alert_ref(alert_id: int) -> str:
    return f"A-{alert_id}"


@dataclass(frozen=True)
class ClearedNow:
    """Where the alert may go under the policy in force now, which a reload may have
    changed since release (a clearance lowered, a partner removed, a channel given to
    another partner or shared with one not cleared): whatever carries the alert's content
    after release is checked against this, place and partner both."""

    # Each place the alert may go, with the partners whose people it reaches there.
    places: dict[str, frozenset[str]]

    def allows(self, target: str, partner_id: str | None) -> bool:
        """Whether the copy at ``target``, delivered for ``partner_id``, may carry the
        alert now: the place is still cleared, and still reaches that partner's people."""
        reached = self.places.get(target)
        if reached is None:
            return False
        return partner_id is None or partner_id in reached


def cleared_now(policy: Policy, alert: Alert) -> ClearedNow:
    spec = AlertSpec(
        tlp=alert.tlp,
        caveats=frozenset(alert.caveats),
        category=alert.category,
        region=alert.region,
        to=None if alert.audience is None else tuple(alert.audience),
    )
    plan = plan_dissemination(policy, spec)
    places: dict[str, set[str]] = {}
    for delivery in plan.deliveries:
        places.setdefault(delivery.target, set()).add(delivery.partner_id)
    for shared in plan.shared:
        places.setdefault(shared.target, set()).add(shared.partner_id)
    return ClearedNow({target: frozenset(who) for target, who in places.items()})


def delivered_for(alert: Alert, target: str) -> str | None:
    """The partner a copy at ``target`` was delivered for, as the plan at release says; a
    channel shared with other partners counts for the one it was delivered for, as the
    dissemination log shows it."""
    if alert.plan is None:
        return None
    for delivery in alert.plan.deliveries:
        if delivery.target == target:
            return delivery.partner_id
    for shared in alert.plan.shared:
        if shared.target == target:
            return shared.partner_id
    return None


def alert_key(alert_id: int) -> str:
    """The outbox message key every copy of an alert shares (edits and retractions find
    the copies by it; the dissemination log is read from it)."""
    return f"alert:{alert_id}"


# As tip ids (bot.tips): "#A-3" and "A-3:" too.
_ALERT_REF = re.compile(r"^#?A-?(\d{1,9})[:,;.]?$", re.IGNORECASE)


def parse_alert_ref(text: str) -> int | None:
    """``A-3``, ``a3``, ``#A-3`` or ``A-3:`` -> 3; anything else -> None."""
    match = _ALERT_REF.match(text.strip())
    return int(match.group(1)) if match else None


# --- the plan as stored with the alert (JSON) -----------------------------------------


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "deliveries": [
            {"partner_id": d.partner_id, "target": d.target, "kind": d.kind, "mode": d.mode}
            for d in plan.deliveries
        ],
        "excluded": [{"partner_id": e.partner_id, "reason": e.reason} for e in plan.excluded],
        "shared": [
            {"partner_id": s.partner_id, "target": s.target, "via": s.via} for s in plan.shared
        ],
        "withheld": [
            {"partner_id": w.partner_id, "target": w.target, "reason": w.reason}
            for w in plan.withheld
        ],
    }


def plan_from_json(data: dict[str, Any]) -> Plan:
    return Plan(
        deliveries=tuple(
            PlannedDelivery(d["partner_id"], d["target"], d["kind"], d["mode"])
            for d in data.get("deliveries", [])
        ),
        excluded=tuple(Exclusion(e["partner_id"], e["reason"]) for e in data.get("excluded", [])),
        shared=tuple(
            SharedTarget(s["partner_id"], s["target"], s["via"]) for s in data.get("shared", [])
        ),
        withheld=tuple(
            WithheldTarget(w["partner_id"], w["target"], w["reason"])
            for w in data.get("withheld", [])
        ),
    )
