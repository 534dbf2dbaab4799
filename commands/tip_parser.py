"""``!tip <summary> [| key: value]…`` (or one ``key: value`` per line) -> a TipDraft.

Officers type on a phone: besides ``|``, a field may follow ``;``, ``,`` or `` / `` or
stand on a line of its own, before or after the summary. Only a field key followed by a
colon starts a field, so ``5th & Main, near the gate`` and ``He said: leave now`` stay
as typed."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from bot.categories import category_codes, find_category, plain_word, similar_categories
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
    "asap": Urgency.IMMEDIATE,
    "emergency": Urgency.IMMEDIATE,
    "critical": Urgency.IMMEDIATE,
    "priority": Urgency.PRIORITY,
    "high": Urgency.PRIORITY,
    "high priority": Urgency.PRIORITY,
    # The middle of three: what "medium" means to anyone who says it.
    "medium": Urgency.PRIORITY,
    "med": Urgency.PRIORITY,
    "routine": Urgency.ROUTINE,
    "normal": Urgency.ROUTINE,
    "low": Urgency.ROUTINE,
    "low priority": Urgency.ROUTINE,
    "not urgent": Urgency.ROUTINE,
    "non urgent": Urgency.ROUTINE,
    # Dispatch priorities: 1 is the most urgent wherever they are used; with three
    # urgencies here, 1, 2 and 3 read in that order. P4 and lower mean different things
    # in different agencies, so they are asked about.
    "p1": Urgency.IMMEDIATE,
    "priority 1": Urgency.IMMEDIATE,
    "p2": Urgency.PRIORITY,
    "priority 2": Urgency.PRIORITY,
    "p3": Urgency.ROUTINE,
    "priority 3": Urgency.ROUTINE,
}
LIMITS = {"summary": 500, "details": 4000}
DEFAULT_LIMIT = 300

_KEY = r"[A-Za-z][A-Za-z_-]{1,14}"
# A line, or a piece of one, "word: value".
_FIELD = re.compile(rf"^\s*({_KEY})\s*:\s*(.*)$", re.DOTALL)
# Where a field may start within a line: after ";", "," or " / ", before "word:". The
# word is checked to be a field key before the line is cut there.
_SEPARATOR = re.compile(rf"(?:[;,]|\s/(?=\s))\s*(?=({_KEY})\s*:)")
# Spelt this close to a field's name, a word before a colon is taken for a mistyped key
# ("Catagory: photo") rather than for text. Not closer: "Plate: ABC123" is text.
_CLOSE_KEY = 0.8

USAGE = "<what you saw> | category: photo | location: Pier 4 | urgency: priority"


class ResendOffered(UserError):
    """A refusal that already shows the command to send instead."""


def parse_tip(text: str, policy: Policy, spelled: str = "!tip") -> TipDraft:
    """``spelled`` is how the officer types the command on their platform (``/tip``).
    Every mistake found is named in one refusal, so the officer corrects the tip once."""
    summary, raw, problems = _split(text)
    if not summary:
        summary, raw = _field_then_summary(raw)
    if not summary and not raw and not problems:
        raise UserError(f"Please describe what you saw. Usage: {spelled} {USAGE}")
    values = _values(raw, problems)
    problems += _length_problems(summary, values)
    draft = _draft(summary, values, policy, problems)
    if not summary:
        if not problems:
            fields = "".join(f" | {name}: {value}" for name, value in values.items())
            raise ResendOffered(
                f"Please start with what you saw, then the fields: {spelled} <what you saw>{fields}"
            )
        problems.append("Please start with what you saw, then the fields.")
    if problems:
        raise UserError("\n".join(problems))
    return draft


def parse_tip_form(form: Sequence[tuple[str, str]], policy: Policy) -> TipDraft:
    """A tip from a platform's form: each box is one field as it stands (a comma or a
    "key:" inside a box is the officer's text, not another field)."""
    fields = dict(form)
    summary = fields.pop("summary", "").strip()
    problems: list[str] = []
    values = _values([(key, value.strip()) for key, value in fields.items()], problems)
    problems += _length_problems(summary, values)
    draft = _draft(summary, values, policy, problems)
    if not summary:
        problems.append("Please describe what you saw.")
    if problems:
        raise UserError("\n".join(problems))
    return draft


def _split(text: str) -> tuple[str, list[tuple[str, str]], list[str]]:
    """The summary, the fields as typed (key, value) and what could not be read."""
    segments = text.split("|")
    summary_parts: list[str] = []
    raw: list[tuple[str, str]] = []
    problems: list[str] = []
    for line in segments[0].split("\n"):
        for piece in _pieces(line):
            field = _field(piece)
            if field is not None:
                raw.append(field)
            elif piece.strip():
                summary_parts.append(piece.strip())
    for segment in segments[1:]:
        if not segment.strip():
            continue
        key, colon, value = segment.partition(":")
        if not colon:
            problems.append(
                f"I couldn't read “{_clip(segment)}”: after | write key: value, "
                f"with key one of {', '.join(FIELDS)}."
            )
            continue
        _read_fields(key.strip(), value, raw)
    return " ".join(summary_parts).strip(), raw, problems


def _field_then_summary(raw: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """``!tip category: photo man taking pictures of the bridge``: one category or urgency
    first and the report after it on the same line. Read so only when the first word is
    a category (or urgency) and the rest isn't; anything else stays as it was typed."""
    if len(raw) != 1:
        return "", raw
    key, value = raw[0]
    first, _, rest = value.partition(" ")
    name = _key(key)
    valid = {"category": find_category, "urgency": _urgency}.get(name or "")
    if valid is None or not rest.strip() or valid(first) is None or valid(value) is not None:
        return "", raw
    return rest.strip(), [(key, first)]


def _values(raw: list[tuple[str, str]], problems: list[str]) -> dict[str, str]:
    """Each known field's value by its name; unknown, empty and repeated ones go to
    ``problems``."""
    values: dict[str, str] = {}
    problems += _unknown_keys([key for key, _ in raw])
    for key, value in raw:
        name = _key(key)
        if name is None:
            continue
        if not value:
            problems.append(f"The field {name} is empty; leave it out or give a value.")
        elif name in values:
            problems.append(f"The field {name} is given twice; keep one.")
        else:
            values[name] = value
    return values


def _draft(summary: str, values: dict[str, str], policy: Policy, problems: list[str]) -> TipDraft:
    """The tip the values describe; values that name no category, urgency or region go to
    ``problems``."""
    draft = TipDraft(summary=summary, category="OTHER")
    if "category" in values:
        category = find_category(values["category"])
        if category is None:
            problems.append(_not_a_category(values["category"]))
        else:
            draft.category = category.code
    else:
        draft.extra["defaulted_category"] = "yes"
    if "urgency" in values:
        urgency = _urgency(values["urgency"])
        if urgency is None:
            problems.append(_not_an_urgency(values["urgency"]))
        else:
            draft.urgency = urgency
    if "region" in values:
        draft.region = _region(values["region"], policy)
        if draft.region is None:
            problems.append(_not_a_region(values["region"], policy))
    draft.location = values.get("location")
    draft.when = values.get("when")
    draft.details = values.get("details")
    return draft


def _pieces(line: str) -> list[str]:
    """A line cut where a field key and a colon follow ``;``, ``,`` or `` / ``."""
    pieces: list[str] = []
    start = 0
    for match in _SEPARATOR.finditer(line):
        if _looks_like_key(match.group(1)):
            pieces.append(line[start : match.start()])
            start = match.end()
    pieces.append(line[start:])
    return pieces


def _field(piece: str) -> tuple[str, str] | None:
    """``key: value`` if the piece starts with a field key (or one mistyped), else None."""
    match = _FIELD.match(piece)
    if match is None or not _looks_like_key(match.group(1)):
        return None
    return match.group(1), match.group(2).strip()


def _read_fields(key: str, rest: str, raw: list[tuple[str, str]]) -> None:
    """One ``| key: value`` segment, which may hold more fields on their own lines or after
    ``;``; its other lines continue the value (details over several lines)."""
    value_lines: list[str] = []
    for n, line in enumerate(rest.split("\n")):
        pieces = _pieces(line)
        for m, piece in enumerate(pieces):
            field = _field(piece) if (n or m) else None
            if field is not None:
                raw.append((key, "\n".join(value_lines).strip()))
                key, value_lines = field[0], [field[1]]
            else:
                value_lines.append(piece.strip())
    raw.append((key, "\n".join(value_lines).strip()))


def _key(word: str) -> str | None:
    word = word.strip().lower()
    if word in FIELDS:
        return word
    return ALIASES.get(word)


def _looks_like_key(word: str) -> bool:
    return _key(word) is not None or bool(
        difflib.get_close_matches(word.lower(), FIELDS, n=1, cutoff=_CLOSE_KEY)
    )


def _unknown_keys(keys: list[str]) -> list[str]:
    """Every unknown key in one answer, each with the field it may have meant."""
    names = [*FIELDS, *ALIASES]
    problems: list[str] = []
    listed = False
    for key in dict.fromkeys(k for k in keys if _key(k) is None):
        close = difflib.get_close_matches(key.strip().lower(), names, n=1, cutoff=0.6)
        problem = f"I don't know the field “{_clip(key)}”."
        if close:
            problem += f" Did you mean {_key(close[0])}?"
        elif not listed:  # the fields listed once, where first needed
            problem += f" Use: {', '.join(FIELDS)}."
            listed = True
        problems.append(problem)
    return problems


def _not_a_category(value: str) -> str:
    close = similar_categories(value)
    problem = f"“{_clip(value)}” is not a category."
    if close:
        problem += " Did you mean " + " or ".join(f"{c.code.lower()} ({c.label})" for c in close)
        problem += "?"
    return problem + f" Use one of: {category_codes()}."


def _urgency(value: str) -> Urgency | None:
    return URGENCY_WORDS.get(_bare(value))


def _not_an_urgency(value: str) -> str:
    close = difflib.get_close_matches(_bare(value), list(URGENCY_WORDS), n=1, cutoff=0.7)
    problem = f"“{_clip(value)}” is not an urgency."
    if close:
        problem += f" Did you mean {URGENCY_WORDS[close[0]].value}?"
    return problem + " Use immediate, priority or routine."


def _region(value: str, policy: Policy) -> str | None:
    for region in policy.center.regions:
        if region.lower() == plain_word(value):
            return region
    return None


def _not_a_region(value: str, policy: Policy) -> str:
    regions = policy.center.regions
    if not regions:
        return f"“{_clip(value)}” is not a region here. Use one of: (this center defines none)."
    problem = f"“{_clip(value)}” is not a region here."
    by_name = {region.lower(): region for region in regions}
    close = difflib.get_close_matches(plain_word(value), list(by_name), n=1, cutoff=0.7)
    if close:
        problem += f" Did you mean {by_name[close[0]]}?"
    return problem + f" Use one of: {', '.join(regions)}."


def _bare(value: str) -> str:
    """``High-Priority!`` -> ``high priority``."""
    return plain_word(value.replace("-", " ").replace("_", " "))


def _length_problems(summary: str, values: dict[str, str]) -> list[str]:
    problems = []
    for name, value in [("summary", summary), *values.items()]:
        limit = LIMITS.get(name, DEFAULT_LIMIT)
        if len(value) > limit:
            what = "The summary is" if name == "summary" else f"The {name} field is"
            problems.append(
                f"{what} too long ({len(value):,} characters; at most {limit:,}). "
                + ("Put more in | details: …" if name == "summary" else "Please shorten it.")
            )
    return problems


def _clip(text: str, limit: int = 40) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
