"""The neutral message model as Slack Block Kit blocks plus a plain-text fallback.

Every piece of text a person wrote is escaped before it reaches a mrkdwn field: Slack
reads ``&``, ``<`` and ``>`` as control characters, so unescaped user text could produce
``<!channel>`` pings, ``<@U…>`` mentions or links whose label hides their target. A bare
word such as ``@channel`` is only turned into a mention when a post asks for it
(``link_names``/``parse=full``), which the sender never does, so escaping is enough.
"""

from __future__ import annotations

import re
from typing import Any

from bot.messages import Button, Message

Block = dict[str, Any]

# Slack's published limits (Block Kit reference); the local fake refuses the same.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3_000
MAX_FIELD_TEXT = 2_000
MAX_FIELDS_PER_SECTION = 10
MAX_HEADER_TEXT = 150
MAX_CONTEXT_TEXT = 3_000
MAX_BUTTON_LABEL = 75
MAX_BUTTON_VALUE = 2_000
MAX_ACTION_ELEMENTS = 25
MAX_ACTION_ID = 255
# chat.postMessage's top-level text: Slack truncates past about 40,000 characters.
MAX_FALLBACK_TEXT = 40_000

ELLIPSIS = "…"


def escape_mrkdwn(text: str) -> str:
    """User text made inert in mrkdwn: no mentions, no links, no special commands."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _clip_escaped(raw: str, limit: int) -> str:
    """Escape, then shorten without cutting an entity such as ``&amp;`` in half."""
    escaped = escape_mrkdwn(raw)
    if len(escaped) <= limit:
        return escaped
    return _split_escaped(raw, limit - 1)[0] + ELLIPSIS


def _split_escaped(raw: str, limit: int) -> list[str]:
    """Escaped chunks of at most ``limit`` characters, cut between characters of the raw
    text (so never inside an entity), preferably at a line break."""
    escaped = escape_mrkdwn(raw)
    if raw and len(escaped) <= limit:
        return [escaped]  # the usual case, without the walk below (every alert copy)
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    last_newline = -1  # index in `current` just after the latest "\n"
    for ch in raw:
        piece = escape_mrkdwn(ch)
        if size + len(piece) > limit and current:
            # Break at the last line break if it keeps most of the chunk; else hard cut.
            cut = last_newline if last_newline > len(current) // 2 else len(current)
            chunks.append("".join(current[:cut]))
            current = current[cut:]
            size = sum(len(p) for p in current)
            last_newline = -1
        current.append(piece)
        size += len(piece)
        if ch == "\n":
            last_newline = len(current)
    if current:
        chunks.append("".join(current))
    return chunks


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}


def _plain(text: str) -> Block:
    return {"type": "plain_text", "text": text, "emoji": True}


def _field_sections(message: Message) -> list[Block]:
    fields = [
        # Labels are ours but may echo a person's words (a custom field): escape both.
        _mrkdwn(_clip_escaped_labelled(field.label, field.value))
        for field in message.fields
    ]
    return [
        {"type": "section", "fields": fields[i : i + MAX_FIELDS_PER_SECTION]}
        for i in range(0, len(fields), MAX_FIELDS_PER_SECTION)
    ]


def _clip_escaped_labelled(label: str, value: str) -> str:
    head = f"*{escape_mrkdwn(label)}*\n"
    return head + _clip_escaped(value or " ", max(1, MAX_FIELD_TEXT - len(head)))


def action_id(button: Button, index: int) -> str:
    """``fusion:<verb>:<index>``: Slack wants action ids unique within a message, and the
    interactivity handler reads the verb; the command itself travels in ``value``."""
    verb = button.command.split(maxsplit=1)[0] if button.command.strip() else "noop"
    return _clip(f"fusion:{verb}:{index}", MAX_ACTION_ID)


def _button(button: Button, index: int) -> Block:
    element: Block = {
        "type": "button",
        "text": _plain(_clip(button.label, MAX_BUTTON_LABEL)),
        "action_id": action_id(button, index),
        "value": button.command[:MAX_BUTTON_VALUE],
    }
    if button.style is not None:
        element["style"] = button.style
    return element


def _action_blocks(message: Message) -> list[Block]:
    elements = [_button(b, i) for i, b in enumerate(message.buttons)]
    return [
        {"type": "actions", "elements": elements[i : i + MAX_ACTION_ELEMENTS]}
        for i in range(0, len(elements), MAX_ACTION_ELEMENTS)
    ]


# The core's footers name commands as the console and Matrix spell them ("Feedback:
# !feedback A-1 useful"), one message for every platform it goes to; in a Slack channel
# only slash commands reach the bot, so the footer says those.
_BANG_COMMAND = re.compile(r"(?<![\w!/])!([a-z][a-z-]{1,20})\b")


def slack_spelling(footer: str) -> str:
    """``!feedback A-1`` -> ``/fusion feedback A-1``; ``!tip`` -> ``/tip``."""
    return _BANG_COMMAND.sub(lambda m: "/tip" if m[1] == "tip" else f"/fusion {m[1]}", footer)


def render_blocks(message: Message) -> tuple[list[Block], str]:
    """Block Kit blocks and the plain ``text`` Slack shows in notifications and where
    blocks can't be drawn. Both stay within Slack's limits whatever the input."""
    top: list[Block] = []
    if message.banner:
        # The handling marking comes first so nobody reads the content before it.
        top.append({"type": "context", "elements": [_mrkdwn(f"*{escape_mrkdwn(message.banner)}*")]})
    if message.header and message.header.strip():
        # plain_text is never parsed for mentions or links: no escaping needed.
        top.append({"type": "header", "text": _plain(_clip(message.header, MAX_HEADER_TEXT))})

    bottom: list[Block] = []
    if message.footer:
        bottom.append(
            {
                "type": "context",
                "elements": [
                    _mrkdwn(_clip_escaped(slack_spelling(message.footer), MAX_CONTEXT_TEXT))
                ],
            }
        )
    bottom.extend(_action_blocks(message))

    fields = _field_sections(message)
    text_chunks = _split_escaped(message.text, MAX_SECTION_TEXT) if message.text.strip() else []
    # Markings, header, footer and buttons always fit (at most a handful of blocks); the
    # body shares what is left of the 50, text first, then fields.
    room = MAX_BLOCKS - len(top) - len(bottom)
    if len(text_chunks) > room:
        text_chunks = text_chunks[:room]
        text_chunks[-1] = _mark_cut(text_chunks[-1])
    room -= len(text_chunks)
    fields = fields[: max(0, room)]
    body = [{"type": "section", "text": _mrkdwn(chunk)} for chunk in text_chunks]
    return [*top, *body, *fields, *bottom], fallback_text(message)


def _mark_cut(chunk: str) -> str:
    if len(chunk) < MAX_SECTION_TEXT:
        return chunk + ELLIPSIS
    # Drop whole trailing characters or entities so the ellipsis fits.
    trimmed = chunk[: MAX_SECTION_TEXT - 1]
    amp = trimmed.rfind("&")
    if amp != -1 and ";" not in trimmed[amp:]:
        trimmed = trimmed[:amp]
    return trimmed + ELLIPSIS


def fallback_text(message: Message) -> str:
    """The notification text: markings first, then header, body and fields, escaped too
    (Slack parses this text for mentions as well)."""
    lines: list[str] = []
    if message.banner:
        lines.append(f"[{message.banner}]")
    if message.header:
        lines.append(message.header)
    if message.text:
        lines.append(message.text)
    lines.extend(f"{f.label}: {f.value}" for f in message.fields)
    if message.footer:
        lines.append(slack_spelling(message.footer))
    raw = "\n".join(lines) or " "
    return _clip_escaped(raw, MAX_FALLBACK_TEXT)
