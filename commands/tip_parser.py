"""``!tip <summary> [| key: value]…`` (or one ``key: value`` per line) -> a TipDraft."""

from __future__ import annotations

import re

from bot.categories import category_list, find_category
from bot.errors import UserError
from bot.policy import Policy
from bot.tips import TipDraft, Urgency

FIELDS = ("category", "location", "region", "when", "urgency", "details")
ALIASES = {
    "cat": "category",
    "type": "category",
    "where": "location",
    "place": "location",
    "loc": "location",
    "address": "location",
    "time": "when",
    "date": "when",
    "area": "region",
    "priority": "urgency",
    "detail": "details",
    "description": "details",
    "notes": "details",
    "info": "details",
}
URGENCY_WORDS = {
    "immediate": Urgency.IMMEDIATE,
    "urgent": Urgency.IMMEDIATE,
    "now": Urgency.IMMEDIATE,
    "priority": Urgency.PRIORITY,
    "high": Urgency.PRIORITY,
    "routine": Urgency.ROUTINE,
    "normal": Urgency.ROUTINE,
    "low": Urgency.ROUTINE,
}
LIMITS = {"summary": 500, "details": 4000}
DEFAULT_LIMIT = 300

# A line "word: value" is a field only if the word looks like a key, so that free text
# such as "He said: leave now" stays text.
_FIELD_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z_-]{1,14})\s*:\s*(.*)$")

USAGE = "!tip <what you saw> | category: photo | location: Pier 4 | urgency: priority"


def parse_tip(text: str, policy: Policy) -> TipDraft:
    segments = [s.strip() for s in text.split("|")]
    head, pairs = segments[0], segments[1:]
    lines = head.split("\n")
    summary_lines: list[str] = []
    raw: list[tuple[str, str]] = []
    for line in lines:
        match = _FIELD_LINE.match(line)
        if match and summary_lines and _key(match.group(1)) is not None:
            raw.append((match.group(1), match.group(2)))
        elif line.strip():
            summary_lines.append(line.strip())
    for pair in pairs:
        if not pair:
            continue
        key, colon, value = pair.partition(":")
        if not colon:
            raise UserError(
                f"I couldn't read “{_clip(pair)}”: after | write key: value, "
                f"with key one of {', '.join(FIELDS)}."
            )
        raw.append((key.strip(), value.strip()))

    summary = " ".join(summary_lines).strip()
    if not summary:
        raise UserError(f"Please describe what you saw. Usage: {USAGE}")
    values: dict[str, str] = {}
    for key, value in raw:
        name = _key(key)
        if name is None:
            raise UserError(
                f"I don't know the field “{_clip(key)}”. Use: {', '.join(FIELDS)}. Example: {USAGE}"
            )
        if not value:
            raise UserError(f"The field {name} is empty; leave it out or give a value.")
        if name in values:
            raise UserError(f"The field {name} is given twice; keep one.")
        values[name] = value
    _check_lengths(summary, values)

    draft = TipDraft(summary=summary, category="OTHER")
    if "category" in values:
        category = find_category(values["category"])
        if category is None:
            raise UserError(
                f"“{_clip(values['category'])}” is not a category. Use one of: {category_list()}."
            )
        draft.category = category.code
    else:
        draft.extra["defaulted_category"] = "yes"
    if "urgency" in values:
        urgency = URGENCY_WORDS.get(values["urgency"].lower())
        if urgency is None:
            raise UserError(
                f"“{_clip(values['urgency'])}” is not an urgency. Use immediate, priority or routine."
            )
        draft.urgency = urgency
    if "region" in values:
        draft.region = _region(values["region"], policy)
    draft.location = values.get("location")
    draft.when = values.get("when")
    draft.details = values.get("details")
    return draft


def _key(word: str) -> str | None:
    word = word.strip().lower()
    if word in FIELDS:
        return word
    return ALIASES.get(word)


def _region(value: str, policy: Policy) -> str:
    regions = policy.center.regions
    for region in regions:
        if region.lower() == value.strip().lower():
            return region
    known = ", ".join(regions) if regions else "(this center defines none)"
    raise UserError(f"“{_clip(value)}” is not a region here. Use one of: {known}.")


def _check_lengths(summary: str, values: dict[str, str]) -> None:
    for name, value in [("summary", summary), *values.items()]:
        limit = LIMITS.get(name, DEFAULT_LIMIT)
        if len(value) > limit:
            raise UserError(
                f"The {name} is too long ({len(value):,} characters; at most {limit:,}). "
                + ("Put more in | details: …" if name == "summary" else "Please shorten it.")
            )


def _clip(text: str, limit: int = 40) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
