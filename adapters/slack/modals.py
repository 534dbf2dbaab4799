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
from commands.tip_parser import DEFAULT_LIMIT, FIELDS, LIMITS

TIP_CALLBACK = "fusion_tip"
INPUT_CALLBACK = "fusion_input"
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
    "approve": InputPrompt(
        "Approve tip",
        "Options",
        "tlp:green to:all now",
        hint="e.g. tlp:amber to:metro-pd — TLP, caveats, partners and timing; leave empty for the defaults.",
        required=False,
    ),
}


def needs_input(command: str) -> bool:
    return command.strip().split(" ", 1)[0].lower() in INPUT_PROMPTS


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


def _select(block_id: str, label: str, options: list[JSONDict], placeholder: str) -> JSONDict:
    return {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label),
        "optional": True,
        "element": {
            "type": "static_select",
            "action_id": VALUE,
            "placeholder": _plain(placeholder),
            "options": options,
        },
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
    """The small form behind a needs-input button (Ask, Reject, Duplicate, Approve)."""
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


def tip_text(values: Mapping[str, Any]) -> str | None:
    """``!tip summary | category: X | …`` from the /tip form; None without a summary."""
    summary = " ".join(field_text(state_value(values, "summary")).split())
    if not summary:
        return None
    parts = [f"!tip {summary}"]
    for name in FIELDS:
        value = field_text(state_value(values, name))
        if value:
            parts.append(f"{name}: {value}")
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
