"""``!approve T-1 [tlp:…] [caveat:…]… [to:a,b|all] [now|digest|at:<time>] [confirm] [title: …]``
-> an AlertRequest, and back to the exact command that confirms it.

``title:`` goes last and takes the rest of the line. Release can't be undone, so nothing
is ever read as an option out of a title's text: a title that holds an option-looking word
(``to:…``, ``tlp:…``, ``caveat:…``, ``at:…``, or ``now``, ``digest``, ``confirm`` as its
last word) is refused with the two commands that say what was meant — the word moved
before ``title:``, or the title in quotes (``title: "Please confirm"``), which is taken
as it stands.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.alert_release import AlertRequest
from bot.alerts import Timing
from bot.errors import UserError
from bot.policy import Policy
from bot.tips import parse_tip_ref
from bot.tlp import TLP

USAGE = (
    "T-1 [tlp:clear|green|amber|amber+strict|red] [caveat:LES]… [to:<partner>,…|all] "
    "[now|digest|at:YYYY-MM-DD HH:MM] [confirm] [title: <text> (last)]"
)
TITLE_LIMIT = 200
TLP_NAMES = ", ".join(t.value.lower() for t in TLP)
OPTIONS = (
    "tlp:…, caveat:…, to:…, now, digest or at:<time> (e.g. at:2026-12-01 07:00), confirm, "
    "and title: … last"
)

_TITLE = re.compile(r"(?:^|\s)title:", re.IGNORECASE)
# Words that would be options before title:. Inside a title they are refused, not guessed.
_OPTION_WORD = re.compile(r"^(?:tlp|caveats?|to|at):", re.IGNORECASE)
_OPTION_LAST_WORDS = ("confirm", "now", "digest")
_VALUED = ("tlp", "caveat", "caveats", "to", "at")
_OPENING_QUOTES = '"“”'
_CLOSING_QUOTES = '"”“'
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?", re.IGNORECASE)
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")


def parse_approve(
    args: str, policy: Policy, *, now: datetime, command: str = "!approve"
) -> tuple[AlertRequest, bool]:
    """The request and whether it is confirmed. Raises UserError naming the valid values."""
    usage = f"{command} {USAGE}"
    options, title = _split_title(args, command)
    words = _join_date_and_time(_join_spaced_values(options.split()))
    if not words:
        raise UserError(f"Which tip? Usage: {usage}")
    tip_id = parse_tip_ref(words[0])
    if tip_id is None:
        raise UserError(
            f"“{_clip(words[0])}” is not a tip id; tip ids look like T-12. Usage: {usage}"
        )
    request = AlertRequest(tip_id=tip_id, title=title)
    confirm = False
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
                f"{OPTIONS}. Usage: {usage}"
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
    if confirm:
        parts.append("confirm")
    if request.title:
        parts.append(title_option(request.title))
    return " ".join(parts)


def title_option(title: str) -> str:
    """``title: …`` that reads back as exactly this title: quoted when its words would
    otherwise be refused as options, or when it is itself wrapped in quotes."""
    if _option_words(title.split()) or _quoted(title) is not None:
        return f'title: "{title}"'
    return f"title: {title}"


def confirms(text: str) -> bool:
    """Whether an ``approve …`` command sends (``confirm`` before any ``title:``)."""
    match = _TITLE.search(text)
    options = text if match is None else text[: match.start()]
    return "confirm" in (word.lower() for word in options.split())


def _split_title(args: str, command: str) -> tuple[str, str | None]:
    match = _TITLE.search(args)
    if match is None:
        return args, None
    options, text = args[: match.start()], " ".join(args[match.end() :].split())
    title = _quoted(text)
    if title is None:
        title = text
        suspect = _option_words(text.split())
        if suspect:
            raise UserError(_title_holds_options(command, options, text, suspect))
    if not title:
        raise UserError("The title is empty; write title: followed by the alert's title.")
    if len(title) > TITLE_LIMIT:
        raise UserError(f"The title is too long ({len(title)} characters; at most {TITLE_LIMIT}).")
    return options, title


def _quoted(text: str) -> str | None:
    """The title inside "…" or “…” (one pair of quotes taken off, whatever is inside),
    or None when it isn't quoted."""
    if len(text) >= 2 and text[0] in _OPENING_QUOTES and text[-1] in _CLOSING_QUOTES:
        return " ".join(text[1:-1].split())
    return None


def _option_words(words: list[str]) -> list[int]:
    """Where in the title's words an option seems to stand."""
    found = [i for i, w in enumerate(words) if _OPTION_WORD.match(w)]
    if words and words[-1].lower() in _OPTION_LAST_WORDS:
        found.append(len(words) - 1)
    return found


def _option_name(word: str) -> str:
    """``to:metro-pd`` -> ``to``; ``confirm`` -> ``confirm``."""
    return word.split(":", 1)[0].lower() if ":" in word else word.lower()


def _title_holds_options(command: str, options: str, title: str, suspect: list[int]) -> str:
    words = title.split()
    named = ", ".join(f"“{_clip(words[i])}”" for i in suspect)
    one = len(suspect) == 1
    quoted = " ".join([command, *options.split(), f'title: "{title}"'])
    refusal = (
        f"Nothing was sent: title: goes last and takes the rest of the line, so I won't read "
        f"{named} out of the title as {'an option' if one else 'options'}."
    )
    # An option given before title: already (a caveat may be given twice) can't be what
    # the word in the title meant: moving it would give it twice.
    given = {_option_name(w) for w in options.split()} - {"caveat", "caveats"}
    movable = [i for i in suspect if _option_name(words[i]) not in given]
    if not movable:
        return refusal + f" If it belongs to the title, put the title in quotes:\n{quoted}"
    fixed = " ".join([command, *options.split(), *(words[i] for i in movable)])
    kept = [w for i, w in enumerate(words) if i not in movable]
    if kept:
        fixed += " " + title_option(" ".join(kept))
    return (
        refusal + f" Put confirm and the other options before title:, e.g.\n{fixed}\nor, if "
        f"{'it belongs' if one else 'they belong'} to the title, put the title in quotes:\n"
        + quoted
    )


def _join_spaced_values(words: list[str]) -> list[str]:
    """``to: metro-pd, transit`` as ``to:metro-pd,transit``: a space after the colon or
    after a list's comma is how people type it (title: has one too)."""
    joined: list[str] = []
    for word in words:
        previous = joined[-1] if joined else ""
        name = previous.split(":", 1)[0].lower()
        if (
            ":" in previous
            and name in _VALUED
            and (previous.endswith(":") or previous.endswith(","))
        ):
            joined[-1] = previous + word
        else:
            joined.append(word)
    return joined


def _join_date_and_time(words: list[str]) -> list[str]:
    """``at:2026-12-05 07:00`` as one word, ``at:2026-12-05T07:00``: people type a space."""
    joined: list[str] = []
    for word in words:
        previous = joined[-1] if joined else ""
        if (
            previous[:3].lower() == "at:"
            and _DATE.fullmatch(previous[3:])
            and _TIME_OF_DAY.fullmatch(word)
        ):
            joined[-1] = f"{previous}T{'0' if word[1] == ':' else ''}{word}"
        else:
            joined.append(word)
    return joined


def _once(seen: set[str], what: str, word: str) -> None:
    if what in seen:
        named = {"tlp": "tlp:", "to": "to:", "timing": "The timing"}.get(what, what)
        raise UserError(f"{named} is given twice (again in “{_clip(word)}”); keep one.")
    seen.add(what)


def _timing(word: str) -> Timing:
    return "digest" if word == "digest" else "now"


def _tlp(value: str) -> TLP:
    try:
        # "amber-strict", "amber_strict", "AMBER STRICT": the one label people spell freely.
        return TLP.parse(re.sub(r"(?i)amber[\s_-]*strict", "AMBER+STRICT", value))
    except ValueError:
        raise UserError(
            f"“{_clip(value)}” is not a TLP 2.0 label.{_meant(value, TLP_NAMES.split(', '))} "
            f"Use tlp: with one of {TLP_NAMES}."
        ) from None


def _meant(typed: str, choices: list[str]) -> str:
    """`` Did you mean x?`` when one choice is close to what was typed, else nothing."""
    lowered = {c.lower(): c for c in choices}
    typed = typed.lower()
    close = difflib.get_close_matches(typed, list(lowered), n=1, cutoff=0.6)
    # A caveat is often typed without its prefix: "fouo" for U//FOUO.
    close = close or [c for c in lowered if c.split("//")[-1] == typed][:1]
    return f" Did you mean {lowered[close[0]]}?" if close else ""


def _caveats(value: str, policy: Policy) -> list[str]:
    known = [c.upper() for c in policy.caveats]
    found: list[str] = []
    for item in filter(None, (v.strip().upper() for v in value.split(","))):
        if item not in known:
            raise UserError(
                f"“{_clip(item)}” is not a caveat this center uses.{_meant(item, known)} "
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
                f"“{_clip(name)}” is not a partner.{_meant(name, known)} Use to:all or partner ids: "
                f"{', '.join(known) or '(the policy lists none)'}."
            )
    if not names:
        raise UserError("to: needs partner ids, e.g. to:metro-pd,state-police, or to:all.")
    return tuple(dict.fromkeys(names))


def _send_at(value: str, tz: ZoneInfo, now: datetime) -> datetime:
    example = (now.astimezone(tz) + timedelta(days=1)).strftime("%Y-%m-%d 07:00")
    clock = _CLOCK.fullmatch(value)
    try:
        if clock is not None:
            return _next_time_of_day(time(int(clock[1]), int(clock[2])), tz, now)
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"“{_clip(value)}” is not a time I can read. Write the date and time, e.g. "
            f"at:{example} (the center's time, {tz.key}), with a zone, "
            f"at:{example.replace(' ', 'T')}-05:00, or a time of day, at:07:00."
        ) from None
    if when.tzinfo is None:
        # People write times in the center's own zone, not in UTC.
        when = _in_zone(when, tz)
    if when <= now:
        raise UserError(
            f"at:{_clip(value)} is in the past ({now.astimezone(tz):%Y-%m-%d %H:%M %Z} now). "
            f"Give a future time, e.g. at:{example}, or use now."
        )
    return when


def _next_time_of_day(clock: time, tz: ZoneInfo, now: datetime) -> datetime:
    """``at:07:00``: the next 07:00 in the center's zone, today or tomorrow."""
    today = now.astimezone(tz).date()
    for day in (today, today + timedelta(days=1)):
        when = _in_zone(datetime.combine(day, clock), tz)
        if when > now:
            return when
    raise AssertionError("a time of day recurs within two days")


def _in_zone(local: datetime, tz: ZoneInfo) -> datetime:
    """A wall time in the center's zone. Of an hour that happens twice (clocks going back)
    it is the first, as local_time then shows with its zone; a time the clocks skip
    doesn't exist, and guessing an hour either side could send an alert an hour early."""
    when = local.replace(tzinfo=tz, fold=0)
    real = when.astimezone(UTC).astimezone(tz)
    if real.replace(tzinfo=None) != local:
        raise UserError(
            f"{local:%Y-%m-%d %H:%M} doesn't exist in {tz.key}: the clocks go forward that "
            f"night and skip it. Give a time outside the skipped hour, e.g. "
            f"at:{real:%Y-%m-%d %H:%M}."
        )
    return when


def _example(name: str) -> str:
    return {
        "tlp": "tlp:amber",
        "caveat": "caveat:LES",
        "caveats": "caveats:LES,CUI",
        "to": "to:metro-pd",
        "at": "at:2026-12-01 07:00",
    }[name]


def _clip(text: str, limit: int = 40) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
