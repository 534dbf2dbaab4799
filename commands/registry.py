"""One declaration per command: its name, who may use it, its usage and help. Parsing,
permission checks and !help all read the same spec, so they can't drift apart."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from commands.context import Context


class Role(IntEnum):
    """Who may use a command. Checked before the command's arguments are even parsed."""

    ANYONE = 0  # partners too: help, feedback
    OFFICER = 1  # may file: anyone in an intake channel or DM when officers = ["*"]
    ANALYST = 2
    SUPERVISOR = 3
    ADMIN = 4


Handler = Callable[["Context", str], Awaitable[None]]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    role: Role
    usage: str  # arguments after the verb, e.g. "T-1 <question>"
    summary: str
    handler: Handler
    aliases: tuple[str, ...] = ()
    examples: tuple[str, ...] = field(default_factory=tuple)


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, CommandSpec] = {}
        self._by_name: dict[str, CommandSpec] = {}

    def command(
        self,
        name: str,
        *,
        role: Role,
        usage: str = "",
        summary: str,
        aliases: tuple[str, ...] = (),
        examples: tuple[str, ...] = (),
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            spec = CommandSpec(name, role, usage, summary, handler, aliases, examples)
            self._specs[name] = spec
            for key in (name, *aliases):
                if key in self._by_name:
                    raise ValueError(f"command {key!r} declared twice")
                self._by_name[key] = spec
            return handler

        return register

    def find(self, name: str) -> CommandSpec | None:
        return self._by_name.get(name.lower())

    def closest(self, name: str, allowed: Callable[[CommandSpec], bool]) -> CommandSpec | None:
        """The allowed command spelt most like ``name`` (``tips`` -> tip), if any is close."""
        names = [key for key, spec in self._by_name.items() if allowed(spec)]
        match = difflib.get_close_matches(name.lower().strip(":,.;!?"), names, n=1, cutoff=0.6)
        return self._by_name[match[0]] if match else None

    def all(self) -> list[CommandSpec]:
        return list(self._specs.values())


REGISTRY = Registry()
command = REGISTRY.command
