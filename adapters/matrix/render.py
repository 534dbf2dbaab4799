"""The neutral message model as a Matrix ``m.room.message`` content: a plain ``body`` and an
``org.matrix.custom.html`` ``formatted_body``.

Safe by construction: every piece of text a person wrote goes through ``html.escape``
before it is placed between a fixed set of tags this module emits itself (``strong``,
``b``, ``em``, ``code``, ``br``). No user text can become a tag, an attribute or a link.

Mentions: Matrix notifies the whole room when a message's ``body`` contains the word
``@room`` (push rule ``.m.rule.roomnotif``, matched case-insensitively) and the sender has
the power to notify, and notifies a user whose name or display name appears in it
(``.m.rule.contains_display_name``). Two guards against user text pinging people:

- every event carries an empty ``m.mentions`` (intentional mentions, Matrix 1.7): servers
  and clients that implement it skip the legacy body-matching rules altogether;
- for older ones, ``@room`` is broken with a WORD JOINER (U+2060), invisible to readers,
  in both ``body`` and ``formatted_body``, and ``matrix.to`` is broken the same way so a
  client's linkifier can't turn a pasted permalink into a user or room pill.

nh3 (an HTML sanitiser) is not a dependency; the HTML here never needs it because no
markup is ever taken from input. It could be added as defence in depth.
"""

from __future__ import annotations

import html
import re
from typing import Any

from bot.messages import Message

# Synapse refuses events over 65,536 bytes, and encryption inflates content by about a
# third (base64). These budgets keep every event we send under the limit.
POST_BUDGET = 40_000
EDIT_BUDGET = 20_000
EDIT_FALLBACK_BUDGET = 8_000
CUT_NOTE = "\n… (cut here: too long for one Matrix message)"

MSGTYPE = "m.notice"  # bots answer with notices: other bots don't reply to them
HTML_FORMAT = "org.matrix.custom.html"
WORD_JOINER = "\u2060"

_ROOM_MENTION = re.compile(r"@(room)", re.IGNORECASE)
_PERMALINK = re.compile(r"matrix(\.to)", re.IGNORECASE)


def defuse(text: str) -> str:
    """User text that can't notify the room or form a Matrix permalink pill."""
    text = _ROOM_MENTION.sub(lambda m: "@" + WORD_JOINER + m.group(1), text)
    return _PERMALINK.sub(lambda m: m.group(0)[:6] + WORD_JOINER + m.group(1), text)


def _esc(text: str) -> str:
    return html.escape(defuse(text), quote=True)


def _multiline(text: str) -> str:
    return "<br>".join(_esc(line) for line in text.splitlines())


def _hint(label: str, command: str) -> str:
    return f"[{label}: !{command}]"


def render_plain(message: Message) -> str:
    lines: list[str] = []
    if message.banner:
        lines.append(message.banner)
    if message.header:
        lines.append(message.header)
    if message.text:
        lines.extend(message.text.splitlines() or [""])
    lines.extend(f"{f.label}: {f.value}" for f in message.fields)
    if message.footer:
        lines.append(message.footer)
    if message.buttons:
        lines.append("  ".join(_hint(b.label, b.command) for b in message.buttons))
    return defuse("\n".join(lines)) or " "


def render_html(message: Message) -> str:
    parts: list[str] = []
    if message.banner:
        # The handling marking first, so nobody reads the content before it.
        parts.append(f"<strong>{_esc(message.banner)}</strong>")
    if message.header:
        parts.append(f"<strong>{_esc(message.header)}</strong>")
    if message.text:
        parts.append(_multiline(message.text))
    parts.extend(f"<b>{_esc(f.label)}</b>: {_multiline(f.value)}" for f in message.fields)
    if message.footer:
        parts.append(f"<em>{_multiline(message.footer)}</em>")
    if message.buttons:
        parts.append(
            "&nbsp;&nbsp;".join(
                f"[{_esc(b.label)}: <code>!{_esc(b.command)}</code>]" for b in message.buttons
            )
        )
    return "<br>".join(parts)


def _cut(text: str, budget: int) -> str:
    data = text.encode()
    if len(data) <= budget:
        return text
    room = budget - len(CUT_NOTE.encode())
    return data[:room].decode(errors="ignore") + CUT_NOTE


def _content(message: Message, budget: int) -> dict[str, Any]:
    body, formatted = render_plain(message), render_html(message)
    content: dict[str, Any] = {"msgtype": MSGTYPE, "body": body, "m.mentions": {}}
    if len(body.encode()) + len(formatted.encode()) <= budget:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = formatted
    else:
        # Too long for both: the plain text alone, cut where it must be.
        content["body"] = _cut(body, budget)
    return content


def reply_relation(reply_to: str) -> dict[str, Any] | None:
    """``m.relates_to`` for an answer: ``$event`` is answered with a reply, ``$event|$root``
    (a command in a thread) with a reply in that thread."""
    event_id, _, root = reply_to.partition("|")
    if not event_id.startswith("$"):
        return None  # another platform's reference
    if root.startswith("$"):
        return {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": False,
            "m.in_reply_to": {"event_id": event_id},
        }
    return {"m.in_reply_to": {"event_id": event_id}}


def render_matrix(message: Message) -> dict[str, Any]:
    """The content of an ``m.room.message`` event showing ``message``."""
    content = _content(message, POST_BUDGET)
    relation = reply_relation(message.reply_to) if message.reply_to else None
    if relation is not None:
        content["m.relates_to"] = relation
    return content


def render_edit(message: Message, original_event_id: str) -> dict[str, Any]:
    """The content of an edit (``m.replace``) of ``original_event_id`` to show ``message``.
    Clients that understand edits show ``m.new_content``; others the starred fallback."""
    new = _content(message, EDIT_BUDGET)
    fallback = _cut("* " + new["body"], EDIT_FALLBACK_BUDGET)
    return {
        "msgtype": MSGTYPE,
        "body": fallback,
        "m.mentions": {},
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_event_id},
    }
