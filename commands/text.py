"""Cleaning and splitting what people type, the same way on every platform."""

from __future__ import annotations

import re
import unicodedata

from bot.errors import UserError

MAX_COMMAND_LENGTH = 6000

# Bidirectional overrides and isolates can make text read differently than it is stored
# ("Trojan Source"); C0/C1 controls can rewrite a terminal. Neither belongs in a tip.
_INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200b\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A lone UTF-16 surrogate ("\ud800" in a JSON string, which Slack's payloads may carry) is
# no character at all and can't be encoded for the database: it becomes U+FFFD.
_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def clean(text: str) -> str:
    text = without_surrogates(text)
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROL.sub("", _INVISIBLE.sub("", text))


def split_invocation(text: str) -> tuple[str, str] | None:
    """``!claim T-1`` -> (``claim``, ``T-1``). Text not starting with ``!`` is chatter."""
    stripped = text.lstrip()
    if not stripped.startswith("!"):
        return None
    if len(stripped) > MAX_COMMAND_LENGTH:
        raise UserError(
            f"That message is too long ({len(stripped):,} characters). Keep a command under "
            f"{MAX_COMMAND_LENGTH:,} characters; put long material in a report and refer to it."
        )
    # "! tip …": a phone's keyboard puts a space after the "!".
    head, _, rest = stripped[1:].lstrip(" ").partition(" ")
    verb, newline, more = head.partition("\n")
    if newline:  # "!tip\ncategory: photo": the space was after "category:"
        rest = more + (" " + rest if rest else "")
    return verb.strip().lower(), rest.strip()


def first_word(text: str) -> tuple[str, str]:
    word, _, rest = text.strip().partition(" ")
    if "\n" in word:
        word, _, more = word.partition("\n")
        rest = more + " " + rest
    return word, rest.strip()
