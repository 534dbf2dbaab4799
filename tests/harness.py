"""Drive the real bot through the real console adapter's line format and sender."""

from __future__ import annotations

from pathlib import Path

from adapters.console.adapter import parse_line
from adapters.console.sender import ConsoleSender
from bot.app import FusionBot, build
from bot.clock import Clock
from bot.delivery import Sender
from bot.policy import Policy
from bot.settings import Settings
from storage.db import Database
from tests.policies import console_policy


class ConsoleHarness:
    """``await h.say("@ana #review !claim T-1")`` returns what the bot printed for it."""

    def __init__(
        self,
        database: Database,
        *,
        policy: Policy | None = None,
        clock: Clock | None = None,
        policy_path: Path | None = None,
        extra_senders: dict[str, Sender] | None = None,
    ) -> None:
        self.printed: list[str] = []
        self.sender = ConsoleSender(self.printed.append)
        settings = Settings.from_environ(
            {"FUSIONBOT_POLICY": str(policy_path)} if policy_path else {}
        )
        self.bot: FusionBot = build(
            settings,
            policy=policy or console_policy(),
            clock=clock,
            senders={"console": self.sender, **(extra_senders or {})},
            database=database,
        )

    async def say(self, line: str) -> list[str]:
        before = len(self.printed)
        command, _ = parse_line(line)
        await self.bot.handle(command)
        await self.bot.drain(10.0)
        return self.printed[before:]

    async def say_text(self, line: str) -> str:
        return "\n".join(await self.say(line))


def lines_for(printed: list[str], prefix: str) -> list[str]:
    """The messages printed to one channel or person (``#review``, ``@olly``)."""
    return [p for p in printed if p.split(" ", 1)[0] == prefix]
