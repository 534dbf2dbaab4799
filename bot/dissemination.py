"""Who receives an alert: a pure plan over the policy (no I/O), so a property test can
prove that no path breaks TLP 2.0 or need-to-know.

The outbox sends only what the plan lists; the plan's exclusions, shared and withheld
targets are what the dissemination log (28 CFR 23.20(f)) records about who did not get it
and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from bot.policy import Partner, Policy
from bot.tlp import TLP

DeliveryKind = Literal["channel", "dm"]
DeliveryMode = Literal["immediate", "digest"]


@dataclass(frozen=True)
class AlertSpec:
    tlp: TLP
    caveats: frozenset[str]
    category: str
    region: str | None = None
    # None means every subscribed partner (the caller turns `to:all` into None).
    to: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PlannedDelivery:
    partner_id: str
    target: str
    kind: DeliveryKind
    mode: DeliveryMode


@dataclass(frozen=True)
class Exclusion:
    partner_id: str
    reason: str


@dataclass(frozen=True)
class SharedTarget:
    """A target this partner would get, already carried by an earlier partner's delivery.

    The partner's people still see the alert, so the dissemination log counts it as reached.
    """

    partner_id: str
    target: str
    via: str


@dataclass(frozen=True)
class WithheldTarget:
    """A channel of an eligible partner that must not carry this alert."""

    partner_id: str
    target: str
    reason: str


@dataclass(frozen=True)
class Plan:
    deliveries: tuple[PlannedDelivery, ...]
    excluded: tuple[Exclusion, ...]
    shared: tuple[SharedTarget, ...] = ()
    withheld: tuple[WithheldTarget, ...] = ()

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(d.target for d in self.deliveries)

    @property
    def partners_reached(self) -> frozenset[str]:
        return frozenset(d.partner_id for d in self.deliveries) | {
            s.partner_id for s in self.shared
        }

    @property
    def excluded_partners(self) -> frozenset[str]:
        return frozenset(e.partner_id for e in self.excluded)


def plan_dissemination(policy: Policy, alert: AlertSpec) -> Plan:
    owners = _channel_owners(policy.partners)
    deliveries: list[PlannedDelivery] = []
    excluded: list[Exclusion] = []
    shared: list[SharedTarget] = []
    withheld: list[WithheldTarget] = []
    carried_by: dict[str, str] = {}

    for partner in policy.partners:
        reason = _refusal(partner, alert)
        if reason is None:
            targets, blocked = _targets(partner, alert, owners)
            withheld.extend(blocked)
            if not targets:
                reason = _no_target_reason(partner, alert, blocked)
        if reason is not None:
            excluded.append(Exclusion(partner.id, reason))
            continue
        red = alert.tlp is TLP.RED
        for target in targets:
            if target in carried_by:
                shared.append(SharedTarget(partner.id, target, carried_by[target]))
                # A partner that wants alerts at once isn't made to wait for the digest of
                # the partner it shares the channel with.
                index = next(i for i, d in enumerate(deliveries) if d.target == target)
                if partner.delivery == "immediate" and deliveries[index].mode == "digest":
                    deliveries[index] = replace(deliveries[index], mode="immediate")
                continue
            carried_by[target] = partner.id
            deliveries.append(
                PlannedDelivery(
                    partner_id=partner.id,
                    target=target,
                    kind="dm" if red else "channel",
                    # RED is for named people about something urgent enough to restrict
                    # that hard; it never waits in a digest.
                    mode="immediate" if red else partner.delivery,
                )
            )

    known = {p.id for p in policy.partners}
    for partner_id in dict.fromkeys(alert.to or ()):
        if partner_id not in known:
            excluded.append(Exclusion(partner_id, "unknown partner"))

    return Plan(tuple(deliveries), tuple(excluded), tuple(shared), tuple(withheld))


def _refusal(partner: Partner, alert: AlertSpec) -> str | None:
    """The first rule this partner fails, or None if it may receive the alert."""
    if alert.to is not None and partner.id not in alert.to:
        return "not named in to:"
    clearance = _clearance_problem(partner, alert)
    if clearance is not None:
        return clearance
    if "*" not in partner.categories and alert.category not in partner.categories:
        return f"not subscribed to category {alert.category}"
    if alert.region is not None and not ({"*", alert.region} & set(partner.regions)):
        return f"not subscribed to region {alert.region}"
    return None


def _clearance_problem(partner: Partner, alert: AlertSpec) -> str | None:
    if not alert.tlp.allowed_under(partner.max_tlp):
        return f"max {partner.max_tlp.label} is below {alert.tlp.label}"
    missing = sorted(alert.caveats - set(partner.caveats))
    if missing:
        noun = "caveat" if len(missing) == 1 else "caveats"
        return f"not cleared for {noun} {', '.join(missing)}"
    return None


def _channel_owners(partners: Sequence[Partner]) -> dict[str, list[Partner]]:
    owners: dict[str, list[Partner]] = {}
    for partner in partners:
        for channel in dict.fromkeys([*partner.channels, *partner.internal_channels]):
            owners.setdefault(channel, []).append(partner)
    return owners


def _targets(
    partner: Partner, alert: AlertSpec, owners: dict[str, list[Partner]]
) -> tuple[list[str], list[WithheldTarget]]:
    if alert.tlp is TLP.RED:
        # People, not channels: a DM reaches only the named person, so sharing one
        # recipient between partners discloses nothing further.
        return list(dict.fromkeys(partner.red_recipients)), []
    if alert.tlp is TLP.AMBER_STRICT:
        wanted = partner.internal_channels
    else:
        wanted = [*partner.channels, *partner.internal_channels]
    kept: list[str] = []
    blocked: list[WithheldTarget] = []
    for channel in dict.fromkeys(wanted):
        reason = _why_withheld(channel, partner, alert, owners[channel])
        if reason is None:
            kept.append(channel)
        else:
            blocked.append(WithheldTarget(partner.id, channel, reason))
    return kept, blocked


def _why_withheld(
    channel: str, partner: Partner, alert: AlertSpec, owners: list[Partner]
) -> str | None:
    """A channel another partner also lists is that partner's channel too: its members
    read whatever is posted there, so every co-owner must be cleared for the alert and
    have the need to know (its subscriptions, and to: when the analyst named partners)."""
    for other in owners:
        if other.id == partner.id:
            continue
        if alert.tlp is TLP.AMBER_STRICT:
            # AMBER+STRICT stays inside one organisation; a channel two partners list
            # isn't internal to either.
            return f"also a channel of {other.id}, so not internal to {partner.id}"
        problem = _refusal(other, alert)
        if problem is not None:
            return f"shared with {other.id} ({problem})"
    return None


def _no_target_reason(partner: Partner, alert: AlertSpec, blocked: list[WithheldTarget]) -> str:
    if alert.tlp is TLP.RED:
        return "TLP:RED goes only to named people and this partner has none"
    if blocked:
        return "no channel may carry it: " + "; ".join(f"{w.target} is {w.reason}" for w in blocked)
    if alert.tlp is TLP.AMBER_STRICT:
        return "TLP:AMBER+STRICT needs a channel internal to the partner and it has none"
    return "has no channels"
