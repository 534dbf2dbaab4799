"""The platform-neutral message model. Adapters render it; nothing here knows a platform.

All text in a Message is plain text written by people or by the bot; adapters escape it
for their platform so that no user text becomes markup, a mention or a link.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from bot.tlp import TLP


class MessageField(BaseModel):
    label: str
    value: str


class Button(BaseModel):
    """A button is a shortcut for a text command: ``command`` is exactly what a user could
    type (``claim T-1``), so every button has a text equivalent and one permission check."""

    label: str
    command: str
    style: Literal["primary", "danger"] | None = None
    # Buttons whose command needs more input (ask, reject, approve) open a form where the
    # platform has one; elsewhere the text hint tells what to type.
    needs_input: bool = False


class Message(BaseModel):
    header: str | None = None
    text: str = ""
    fields: list[MessageField] = Field(default_factory=list)
    tlp: TLP | None = None
    caveats: list[str] = Field(default_factory=list)
    buttons: list[Button] = Field(default_factory=list)
    footer: str | None = None
    # The platform's id for the message this one answers, so that platforms with replies
    # and threads (Matrix) show the answer under the question; others ignore it.
    reply_to: str | None = None

    @property
    def banner(self) -> str | None:
        """The handling marking line, e.g. ``TLP:AMBER // LES``."""
        if self.tlp is None:
            return None
        return " // ".join([self.tlp.label, *self.caveats])

    def plain_lines(self) -> list[str]:
        """A plain-text rendering every adapter can fall back on."""
        lines: list[str] = []
        if self.banner:
            lines.append(self.banner)
        if self.header:
            lines.append(self.header)
        if self.text:
            lines.extend(self.text.splitlines() or [""])
        lines.extend(f"{f.label}: {f.value}" for f in self.fields)
        if self.footer:
            lines.append(self.footer)
        if self.buttons:
            lines.append("  ".join(f"[{b.label}: !{b.command}]" for b in self.buttons))
        return lines
