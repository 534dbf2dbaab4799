"""``!approve T-1 [tlp:…] [caveat:…]… [to:a,b|all] [now|digest|at:<ISO>] [title: …] [confirm]``
-> an AlertRequest, and back to the exact command that confirms it.

``title:`` takes the rest of the line (so a title may contain any words); only a final
``confirm`` after it is read as the option.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.alert_release import AlertRequest
from bot.alerts import Timing
from bot.errors import UserError
from bot.policy import Policy
from bot.tips import parse_tip_ref
from bot.tlp import TLP

USAGE = (
    "T-1 [tlp:clear|green|amber|amber+strict|red] [caveat:LES]… [to:<partner>,…|all] "
    "[now|digest|at:<time>] [title: <text>] [confirm]"
)
TITLE_LIMIT = 200
TLP_NAMES = ", ".join(t.value.lower() for t in TLP)

_TITLE = re.compile(r"(?:^|\s)title:", re.IGNORECASE)
_TRAILING_CONFIRM = re.compile(r"\s+confirm\s*$", re.IGNORECASE)


def parse_approve(
    args: str, policy: Policy, *, now: datetime, command: str = "!approve"
) -> tuple[AlertRequest, bool]:
    """The request and whether it is confirmed. Raises UserError naming the valid values."""
    usage = f"{command} {USAGE}"
    options, title, confirm = _split_title(args)
    words = options.split()
    if not words:
        raise UserError(f"Which tip? Usage: {usage}")
    tip_id = parse_tip_ref(words[0])
    if tip_id is None:
        raise UserError(
            f"“{_clip(words[0])}” is not a tip id; tip ids look like T-12. Usage: {usage}"
        )
    request = AlertRequest(tip_id=tip_id, title=title)
    seen: set[str] = set()
    caveats: list[str] = []
    for word in words[1:]:
        name, colon, value = word.partition(":")
        name = name.lower()
        if not colon and name == "confirm":
            confirm = True
            continue
        if not colon and name in ("now", "digest"):
            _once(seen, "timing", word)
            request = replace(request, timing=_timing(name))
            continue
        if not colon or name not in ("tlp", "caveat", "caveats", "to", "at"):
            raise UserError(
                f"I don't understand “{_clip(word)}”. After the tip id you may give "
                f"tlp:…, caveat:…, to:…, now, title: … (last) and confirm. Usage: {usage}"
            )
        if not value:
            raise UserError(f"{name}: needs a value right after the colon, e.g. {_example(name)}")
        if name == "tlp":
            _once(seen, "tlp", word)
            request = replace(request, tlp=_tlp(value))
        elif name in ("caveat", "caveats"):
            caveats += [c for c in _caveats(value, policy) if c not in caveats]
        elif name == "to":
            _once(seen, "to", word)
            request = replace(request, to=_audience(value, policy))
        else:
            _once(seen, "timing", word)
            request = replace(request, timing="at", send_at=_send_at(value, policy.center.tz, now))
    return replace(request, caveats=tuple(caveats)), confirm


def format_approve(request: AlertRequest, *, command: str = "!approve", confirm: bool) -> str:
    """The command, every choice spelled out, that does exactly what was previewed."""
    parts = [command, f"T-{request.tip_id}", f"tlp:{request.tlp.value.lower()}"]
    if request.caveats:
        parts.append("caveat:" + ",".join(request.caveats))
    parts.append("to:all" if request.to is None else "to:" + ",".join(request.to))
    if request.timing == "at" and request.send_at is not None:
        parts.append("at:" + request.send_at.isoformat())
    else:
        parts.append(request.timing)
    if request.title:
        parts.append(f"title: {request.title}")
    if confirm:
        parts.append("confirm")
    return " ".join(parts)


def _split_title(args: str) -> tuple[str, str | None, bool]:
    match = _TITLE.search(args)
    if match is None:
        return args, None, False
    title = args[match.end() :]
    confirm = False
    trailing = _TRAILING_CONFIRM.search(title)
    if trailing is not None:
        title, confirm = title[: trailing.start()], True
    title = " ".join(title.split())
    if not title:
        raise UserError("The title is empty; write title: followed by the alert's title.")
    if len(title) > TITLE_LIMIT:
        raise UserError(f"The title is too long ({len(title)} characters; at most {TITLE_LIMIT}).")
    return args[: match.start()], title, confirm


def _once(seen: set[str], what: str, word: str) -> None:
    if what in seen:
        raise UserError(f"The {what} is given twice (again in “{_clip(word)}”); keep one.")
    seen.add(what)


def _timing(word: str) -> Timing:
    return "digest" if word == "digest" else "now"


def _tlp(value: str) -> TLP:
    try:
        return TLP.parse(value)
    except ValueError:
        raise UserError(
            f"“{_clip(value)}” is not a TLP 2.0 label. Use tlp: with one of {TLP_NAMES}."
        ) from None


def _caveats(value: str, policy: Policy) -> list[str]:
    known = [c.upper() for c in policy.caveats]
    found: list[str] = []
    for item in filter(None, (v.strip().upper() for v in value.split(","))):
        if item not in known:
            raise UserError(
                f"“{_clip(item)}” is not a caveat this center uses. "
                f"Use one of: {', '.join(known) or '(none defined)'}."
            )
        found.append(item)
    return found


def _audience(value: str, policy: Policy) -> tuple[str, ...] | None:
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if names == ["all"]:
        return None
    known = [p.id for p in policy.partners]
    for name in names:
        if name == "all":
            raise UserError("to:all already names every partner; leave the other names out.")
        if name not in known:
            raise UserError(
                f"“{_clip(name)}” is not a partner. Use to:all or partner ids: "
                f"{', '.join(known) or '(the policy lists none)'}."
            )
    if not names:
        raise UserError("to: needs partner ids, e.g. to:metro-pd,state-police, or to:all.")
    return tuple(dict.fromkeys(names))


def _send_at(value: str, tz: ZoneInfo, now: datetime) -> datetime:
    example = (now.astimezone(tz) + timedelta(days=1)).strftime("%Y-%m-%dT07:00")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"“{_clip(value)}” is not a time I can read. Write an ISO time, e.g. "
            f"at:{example} (the center's time, {tz.key}) or with a zone, at:{example}-05:00."
        ) from None
    if when.tzinfo is None:
        # People write times in the center's own zone, not in UTC.
        when = when.replace(tzinfo=tz)
    if when <= now:
        raise UserError(
            f"at:{_clip(value)} is in the past ({now.astimezone(tz):%Y-%m-%d %H:%M %Z} now). "
            f"Give a future time, e.g. at:{example}, or use now."
        )
    return when


def _example(name: str) -> str:
    return {
        "tlp": "tlp:amber",
        "caveat": "caveat:LES",
        "caveats": "caveats:LES,CUI",
        "to": "to:metro-pd",
        "at": "at:2026-12-01T07:00",
    }[name]


def _clip(text: str, limit: int = 40) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
