"""Reactions on the bot's messages as commands (no I/O here).

A reaction is a shortcut for a text command, exactly like a Slack button: it becomes the
command a person could have typed, and goes through the same permission checks.

    ✋  on a review card       !claim T-n
    ✅  on a review card       !approve T-n          (the "who will see this" preview)
    ✅  on that preview        !approve T-n … confirm (its Confirm button: sends the alert)
    ❌  on a review card       !reject T-n           (asks for the reason: one is required)
    👍  on an alert            !feedback A-n useful
    👎  on an alert            !feedback A-n not-useful

Other reactions are people talking and are ignored.
"""

from __future__ import annotations

import re

from bot.messages import Message
from commands.approve_parser import confirms

CLAIM, APPROVE, REJECT, USEFUL, NOT_USEFUL = "✋", "✅", "❌", "👍", "👎"
REACTIONS = (CLAIM, APPROVE, REJECT, USEFUL, NOT_USEFUL)

# Clients send the same emoji with or without the emoji presentation selector, and with a
# skin tone; all of them mean the same thing.
_DECORATION = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
_SUBJECT = {"card:": "T-", "alert:": "A-"}


def normalise(key: str) -> str:
    return _DECORATION.sub("", key).strip()


def subject_of(message_key: str | None) -> str | None:
    """``card:7`` -> ``T-7``, ``alert:3`` -> ``A-3``; None for other messages."""
    for prefix, ref in _SUBJECT.items():
        if message_key and message_key.startswith(prefix):
            number = message_key.removeprefix(prefix)
            if number.isdigit():
                return ref + number
    return None


def reaction_command(key: str, message: Message, message_key: str | None) -> str | None:
    """The command text (with its ``!``) a reaction stands for, or None to ignore it."""
    emoji = normalise(key)
    if emoji not in REACTIONS:
        return None
    subject = subject_of(message_key)
    if emoji == APPROVE:
        confirm = next(
            (b.command for b in message.buttons if b.command.startswith("approve ")), None
        )
        if confirm is not None and confirms(confirm):
            return "!" + confirm
    if subject is None:
        if emoji in (USEFUL, NOT_USEFUL) and message_key and message_key.startswith("digest"):
            return "!feedback"  # several alerts: the usage answer says how to name one
        return None
    if subject.startswith("T-"):
        verbs = {CLAIM: "claim", APPROVE: "approve", REJECT: "reject"}
        return f"!{verbs[emoji]} {subject}" if emoji in verbs else None
    if emoji in (USEFUL, NOT_USEFUL):
        verdict = "useful" if emoji == USEFUL else "not-useful"
        return f"!feedback {subject} {verdict}"
    return None
