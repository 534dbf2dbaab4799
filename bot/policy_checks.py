"""Checks of the policy file that span several tables, each finding placed at its setting.

A finding's ``loc`` is a path into the file the way pydantic writes one
(``("partners", 1, "regions", 0)``), so the loader can name its line, table and field
exactly as it does for a single wrong value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.categories import CATEGORIES
from bot.tips import Urgency
from bot.tlp import TLP

if TYPE_CHECKING:
    from bot.policy import Center, Intake, Partner, Policy, Review


@dataclass(frozen=True)
class Finding:
    loc: tuple[str | int, ...]
    message: str


class PolicyConflicts(Exception):
    """Tables that each pass alone but contradict one another.

    Deliberately not a ValueError: pydantic would fold it into a single error without a
    place, and the loader needs every finding with its own.
    """

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("; ".join(f"{_path(f.loc)}: {f.message}" for f in findings))


@dataclass(frozen=True)
class Sections:
    """The tables the checks read. ``None`` stands for a table that failed its own
    validation: its problems are reported already, and checking against it would only
    add noise (a misspelt key in one partner must not hide the others' problems)."""

    center: Center | None
    caveats: Sequence[str] | None
    intake: Sequence[Intake | None]
    review: Sequence[Review | None] | None
    partners: Sequence[Partner | None]


def sections_of(policy: Policy) -> Sections:
    return Sections(policy.center, policy.caveats, policy.intake, policy.review, policy.partners)


def conflicts(sections: Sections) -> list[Finding]:
    """Every contradiction between tables; the policy can't be used while one remains."""
    return [
        *_unrouted_categories(sections),
        *_duplicate_partner_ids(sections),
        *_unknown_regions(sections),
        *_unknown_caveats(sections),
        *_tip_channels_given_to_partners(sections),
    ]


def idle_settings(sections: Sections) -> list[Finding]:
    """Settings that are valid but can never take effect: worth a warning, not a refusal."""
    findings: list[Finding] = []
    for index, partner in enumerate(sections.partners):
        if partner is not None and partner.red_recipients and partner.max_tlp is not TLP.RED:
            findings.append(
                Finding(
                    ("partners", index, "red_recipients"),
                    f"max_tlp is {partner.max_tlp.value}, below RED, so these people will "
                    'never receive anything; raise max_tlp to "RED" or remove red_recipients',
                )
            )
    return findings


def _unrouted_categories(sections: Sections) -> list[Finding]:
    routes = sections.review
    if not routes or any(route is None for route in routes):
        return []
    valid = [route for route in routes if route is not None]
    # Categories grouped by the urgencies no route takes, so one gap reads as one phrase.
    gaps: dict[tuple[Urgency, ...], list[str]] = {}
    for code in CATEGORIES:
        missing = tuple(u for u in Urgency if not any(r.takes(code, u) for r in valid))
        if missing:
            gaps.setdefault(missing, []).append(code)
    if not gaps:
        return []
    phrases = [
        ("any category" if len(codes) == len(CATEGORIES) else f"category {', '.join(codes)}")
        + (
            " at any urgency"
            if len(urgencies) == len(Urgency)
            else f" at urgency {', '.join(u.value for u in urgencies)}"
        )
        for urgencies, codes in gaps.items()
    ]
    return [
        Finding(
            ("review", len(valid) - 1),
            f"no [[review]] takes {'; nor '.join(phrases)}; "
            'add a last [[review]] with categories = ["*"]',
        )
    ]


def _duplicate_partner_ids(sections: Sections) -> list[Finding]:
    first: dict[str, int] = {}
    findings: list[Finding] = []
    for index, partner in enumerate(sections.partners):
        if partner is None:
            continue
        if partner.id in first:
            findings.append(
                Finding(
                    ("partners", index, "id"),
                    f"partner id {partner.id!r} is used twice (also by [[partners]] "
                    f"#{first[partner.id] + 1}); give each partner its own id",
                )
            )
        else:
            first[partner.id] = index
    return findings


def _unknown_regions(sections: Sections) -> list[Finding]:
    if sections.center is None:
        return []
    known = sections.center.regions
    findings: list[Finding] = []
    for index, partner in enumerate(sections.partners):
        if partner is None:
            continue
        for position, region in enumerate(partner.regions):
            if region != "*" and region not in known:
                findings.append(
                    Finding(
                        ("partners", index, "regions", position),
                        f"region {region!r} is not one of [center] regions "
                        f"({', '.join(known) or 'none defined'})",
                    )
                )
    return findings


def _unknown_caveats(sections: Sections) -> list[Finding]:
    if sections.caveats is None:
        return []
    known = {c.strip().upper() for c in sections.caveats}
    findings: list[Finding] = []
    for index, partner in enumerate(sections.partners):
        if partner is None:
            continue
        for position, caveat in enumerate(partner.caveats):
            if caveat not in known:
                findings.append(
                    Finding(
                        ("partners", index, "caveats", position),
                        f"caveat {caveat!r} is not one of this center's caveats "
                        f"({', '.join(sorted(known)) or 'none'}); if it is one, add it to "
                        "caveats = [...] at the top of the file, before the first [table]",
                    )
                )
    return findings


def _tip_channels_given_to_partners(sections: Sections) -> list[Finding]:
    """A partner's people read whatever lands in its channels: a review or intake channel
    listed there shows them every raw tip card, and their feedback there would be taken
    for the partner's."""
    roles: dict[str, str] = {}
    for index, route in enumerate(sections.review or []):
        for channel in route.channels if route is not None else []:
            roles.setdefault(channel, f"a review channel ([[review]] #{index + 1} {route.name!r})")
    for index, intake in enumerate(sections.intake):
        for channel in intake.channels if intake is not None else []:
            roles.setdefault(channel, f"an intake channel ([[intake]] #{index + 1})")
    findings: list[Finding] = []
    for index, partner in enumerate(sections.partners):
        if partner is None:
            continue
        for field in ("channels", "internal_channels"):
            for position, channel in enumerate(getattr(partner, field)):
                if channel in roles:
                    findings.append(
                        Finding(
                            ("partners", index, field, position),
                            f"{channel!r} is {roles[channel]} and can't also be a partner "
                            "channel: the partner's people would read every raw tip there; "
                            "give the partner a channel of its own",
                        )
                    )
    return findings


def _path(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
