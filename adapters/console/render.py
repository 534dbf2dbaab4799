"""The neutral message model as terminal lines."""

from __future__ import annotations

from bot.messages import Message


def render_lines(message: Message) -> list[str]:
    lines: list[str] = []
    if message.banner:
        lines.append(f"[{message.banner}]")
    if message.header:
        lines.append(message.header)
    if message.text:
        lines.extend(message.text.split("\n"))
    for field in message.fields:
        first, *more = field.value.split("\n")
        lines.append(f"{field.label}: {first}")
        lines.extend(f"  {line}" for line in more)
    if message.footer:
        lines.append(message.footer)
    if message.buttons:
        lines.append(
            "  ".join(
                f"[{b.label}: !{b.command}{' …' if b.needs_input else ''}]" for b in message.buttons
            )
        )
    return lines or [""]


def format_output(prefix: str, message: Message, *, edited: bool = False) -> str:
    """First line after the prefix; every further line indented, so no text a person
    wrote can ever start a line that looks like the bot's own output."""
    # Split again: a header or footer may hold line breaks of its own.
    first, *rest = [part for line in render_lines(message) for part in line.split("\n")]
    marker = " (edited)" if edited else ""
    return "\n".join([f"{prefix}{marker} {first}".rstrip(), *(f"    {line}" for line in rest)])
