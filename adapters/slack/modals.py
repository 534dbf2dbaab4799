"""Slack modals (Block Kit views) and reading their submissions back into command text.

Builders are pure functions returning the view dict given to ``views.open``; readers turn a
``view_submission`` payload into the text command the core understands (``!tip …``,
``!ask T-1 …``), so a modal is only another way of typing a command.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.categories import CATEGORIES
from bot.tlp import TLP
from commands.approve_parser import title_option
from commands.tip_parser import DEFAULT_LIMIT, FIELDS, LIMITS

TIP_CALLBACK = "fusion_tip"
INPUT_CALLBACK = "fusion_input"
APPROVE_CALLBACK = "fusion_approve"
# Every input element uses this action_id; the block_id names the field.
VALUE = "value"

# Slack caps a plain_text_input at 3,000 characters.
_SLACK_INPUT_MAX = 3000
_URGENCIES = ("immediate", "priority", "routine")

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class InputPrompt:
    """What a button whose command needs more words asks for."""

    title: str
    label: str
    placeholder: str
    hint: str | None = None
    required: bool = True
    multiline: bool = False


# Verbs whose button opens a small form; the submitted text is appended to the command.
INPUT_PROMPTS: dict[str, InputPrompt] = {
    "ask": InputPrompt("Ask the officer", "Question", "What do you need to know?", multiline=True),
    "reject": InputPrompt("Reject tip", "Reason", "Why is this tip rejected?", multiline=True),
    "dup": InputPrompt("Mark duplicate", "Original tip", "e.g. T-2"),
}

# The approve form's choices. Defaults match the core's: TLP:AMBER, sent now.
_TLP_CHOICES = [(t.label, t.value.lower()) for t in TLP]
_DEFAULT_TLP = TLP.AMBER.value.lower()
_TIMINGS = [
    ("Now (each partner as it takes alerts)", "now"),
    ("In the partners' next digest", "digest"),
    ("At a set time", "at"),
]


def needs_input(command: str) -> bool:
    """A button that stands for ``ask T-1`` (and nothing more) opens a form for the rest."""
    words = command.split()
    return len(words) <= 2 and bool(words) and words[0].lower() in INPUT_PROMPTS


def opens_approve_form(command: str) -> bool:
    """The card's bare ``approve T-1`` asks for the options; a complete command
    (the preview's ``approve T-1 … confirm``) is sent as it is."""
    words = command.split()
    return len(words) == 2 and words[0].lower() == "approve"


def _plain(text: str) -> JSONDict:
    return {"type": "plain_text", "text": text, "emoji": True}


def _option(text: str, value: str) -> JSONDict:
    return {"text": _plain(text[:75]), "value": value}


def _text_input(
    block_id: str,
    label: str,
    *,
    required: bool = False,
    multiline: bool = False,
    max_length: int = DEFAULT_LIMIT,
    placeholder: str | None = None,
    hint: str | None = None,
) -> JSONDict:
    element: JSONDict = {
        "type": "plain_text_input",
        "action_id": VALUE,
        "multiline": multiline,
        "max_length": min(max_length, _SLACK_INPUT_MAX),
    }
    if placeholder:
        element["placeholder"] = _plain(placeholder[:150])
    block: JSONDict = {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label),
        "element": element,
        "optional": not required,
    }
    if hint:
        block["hint"] = _plain(hint)
    return block


def _select(
    block_id: str,
    label: str,
    options: list[JSONDict],
    placeholder: str,
    *,
    initial: JSONDict | None = None,
    required: bool = False,
) -> JSONDict:
    element: JSONDict = {
        "type": "static_select",
        "action_id": VALUE,
        "placeholder": _plain(placeholder),
        "options": options,
    }
    if initial is not None:
        element["initial_option"] = initial
    return {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label),
        "optional": not required,
        "element": element,
    }


def _radio(block_id: str, label: str, options: list[JSONDict], initial: JSONDict) -> JSONDict:
    return {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label),
        "optional": False,
        "element": {
            "type": "radio_buttons",
            "action_id": VALUE,
            "options": options,
            "initial_option": initial,
        },
    }


def loading_modal(view: Mapping[str, Any]) -> JSONDict:
    """What ``views.open`` shows at once, within the trigger's 3 seconds; ``views.update``
    fills in ``view`` right after. No submit button: nothing can be sent from it."""
    return {
        "type": "modal",
        "callback_id": view.get("callback_id", ""),
        "title": view.get("title") or _plain("fusionbot"),
        "close": _plain("Cancel"),
        "private_metadata": view.get("private_metadata", ""),
        "blocks": [{"type": "section", "text": _plain("Loading…")}],
    }


def tip_modal(channel_id: str) -> JSONDict:
    """The /tip form; ``private_metadata`` remembers where it was opened."""
    categories = [_option(f"{c.code} — {c.label}", c.code) for c in CATEGORIES.values()]
    urgencies = [_option(u.capitalize(), u) for u in _URGENCIES]
    return {
        "type": "modal",
        "callback_id": TIP_CALLBACK,
        "title": _plain("File a tip"),
        "submit": _plain("File"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"channel": channel_id}),
        "blocks": [
            _text_input(
                "summary",
                "What did you see?",
                required=True,
                max_length=LIMITS["summary"],
                placeholder="Behaviour, not who someone is",
            ),
            _select("category", "Category", categories, "ISE-SAR category"),
            _text_input("location", "Location", placeholder="e.g. Pier 4, north gate"),
            _text_input("region", "Region"),
            _text_input("when", "When", placeholder="e.g. today 14:10"),
            _select("urgency", "Urgency", urgencies, "How urgent?"),
            _text_input(
                "details", "Details", multiline=True, max_length=LIMITS.get("details", 4000)
            ),
        ],
    }


def input_modal(command: str, channel_id: str, message_ts: str | None) -> JSONDict:
    """The small form behind a needs-input button (Ask, Reject, Duplicate)."""
    verb = command.strip().split(" ", 1)[0].lower()
    prompt = INPUT_PROMPTS[verb]
    return {
        "type": "modal",
        "callback_id": INPUT_CALLBACK,
        "title": _plain(prompt.title[:24]),
        "submit": _plain("Send"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps(
            {"command": command, "channel": channel_id, "ts": message_ts}
        ),
        "blocks": [
            {"type": "section", "text": _plain(f"/fusion {command} …")},
            _text_input(
                "input",
                prompt.label,
                required=prompt.required,
                multiline=prompt.multiline,
                max_length=_SLACK_INPUT_MAX,
                placeholder=prompt.placeholder,
                hint=prompt.hint,
            ),
        ],
    }


def approve_modal(tip_ref: str, channel_id: str, message_ts: str | None) -> JSONDict:
    """The card's Approve form: TLP, caveats, partners, timing and title. It only spells
    the ``approve`` command; the core checks every value and answers with the preview."""
    tlps = [_option(label, value) for label, value in _TLP_CHOICES]
    timings = [_option(label, value) for label, value in _TIMINGS]
    return {
        "type": "modal",
        "callback_id": APPROVE_CALLBACK,
        "title": _plain(f"Approve {tip_ref}"[:24]),
        "submit": _plain("Preview"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"tip": tip_ref, "channel": channel_id, "ts": message_ts}),
        "blocks": [
            {
                "type": "section",
                "text": _plain(
                    "Nothing is sent yet: you will first see who would receive the alert, "
                    "with a button to confirm."
                ),
            },
            _select(
                "tlp",
                "TLP",
                tlps,
                "Traffic Light Protocol",
                initial=next(o for o in tlps if o["value"] == _DEFAULT_TLP),
                required=True,
            ),
            _text_input("caveats", "Caveats", placeholder="e.g. LES, CUI", max_length=200),
            _text_input(
                "partners",
                "Partners",
                placeholder="e.g. metro-pd, transit — or all",
                hint="Partner ids separated by commas, or all (every cleared, subscribed "
                "partner). Empty means all.",
                max_length=1000,
            ),
            _radio("timing", "When", timings, timings[0]),
            _text_input(
                "at",
                "Time (for “At a set time”)",
                placeholder="e.g. 2026-12-01T07:00",
                hint="ISO time in the center's time zone, or with an offset (…-05:00).",
                max_length=64,
            ),
            _text_input("title", "Title", placeholder="Leave empty for the tip's summary"),
        ],
    }


# ------------------------------------------------------------------ submissions


def state_value(values: Mapping[str, Any], block_id: str) -> str:
    """The text typed or the option chosen in one block, "" when left empty."""
    element = (values.get(block_id) or {}).get(VALUE) or {}
    if element.get("type") == "static_select" or "selected_option" in element:
        option = element.get("selected_option") or {}
        return str(option.get("value") or "").strip()
    return str(element.get("value") or "").strip()


def field_text(value: str) -> str:
    """'|' separates a tip's fields, so a user's '|' becomes '/'."""
    return value.replace("|", "/")


def tip_form(values: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """The /tip form's boxes as (field, value), summary first; None without a summary."""
    summary = " ".join(state_value(values, "summary").split())
    if not summary:
        return None
    filled = ((name, state_value(values, name)) for name in FIELDS)
    return (("summary", summary), *((name, value) for name, value in filled if value))


def tip_text(form: tuple[tuple[str, str], ...]) -> str:
    """``!tip summary | category: X | …``: the form's tip as one line."""
    (_, summary), *fields = form
    parts = [f"!tip {field_text(summary)}"]
    parts += [f"{name}: {field_text(value)}" for name, value in fields]
    return " | ".join(parts)


def metadata(view: Mapping[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def input_text(command: str, typed: str) -> str:
    """``!ask T-1 <question>`` from the button's command and what was typed."""
    typed = typed.strip()
    if command.split(" ", 1)[0].lower() == "dup":
        typed = " ".join(typed.split())
    return f"!{command} {typed}".rstrip()


def _words(value: str) -> list[str]:
    return [w for w in value.replace(",", " ").split() if w]


def approve_text(tip_ref: str, values: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """``!approve T-1 tlp:amber caveat:LES to:metro-pd,transit now title: …`` from the
    approve form — never with ``confirm``: the core answers with the preview. Returns the
    text, or None with an error per block the form can point at."""
    errors: dict[str, str] = {}
    timing = state_value(values, "timing") or "now"
    if timing not in {value for _, value in _TIMINGS}:
        errors["timing"] = "Choose when to send it."
    at = "T".join(state_value(values, "at").split())
    if timing == "at" and not at:
        errors["at"] = "Give the time to send it, e.g. 2026-12-01T07:00."
    elif timing != "at" and at:
        errors["at"] = "Choose “At a set time” to use this time, or leave it empty."
    title = " ".join(state_value(values, "title").split())
    if errors:
        return None, errors
    tlp = "".join(state_value(values, "tlp").split()) or _DEFAULT_TLP
    parts = [f"!approve {tip_ref}", f"tlp:{tlp}"]
    caveats = _words(state_value(values, "caveats"))
    if caveats:
        parts.append("caveat:" + ",".join(caveats))
    partners = _words(state_value(values, "partners"))
    parts.append("to:" + (",".join(partners) if partners else "all"))
    parts.append(f"at:{at}" if timing == "at" else timing)
    if title:
        # Quoted where its words could pass for options: the form's title is all title.
        parts.append(title_option(title))
    return " ".join(parts), {}
