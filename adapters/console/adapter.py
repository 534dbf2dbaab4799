"""The console adapter: speak as anyone in any channel, for trying the bot and for scripts.

Non-interactive input is one line per message: ``@<name> #<channel> <text>``, or
``@<name> @bot <text>`` for a direct message to the bot.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from commands.context import Command

_LINE = re.compile(r"^@(?P<name>[\w.-]+)\s+(?P<where>#[\w.-]+|@bot)\s?(?P<text>.*)$", re.DOTALL)


class BadLine(ValueError):
    pass


@dataclass
class Speaker:
    name: str
    where: str  # "#channel" or "@bot"


def parse_line(line: str, current: Speaker | None = None) -> tuple[Command, Speaker]:
    """``@ana #review !claim T-1`` -> a Command from console:ana in console:#review.
    In interactive mode a line without the prefix is said by the current speaker."""
    match = _LINE.match(line.strip())
    if match:
        speaker = Speaker(match["name"], match["where"])
        text = match["text"]
    elif current is not None:
        speaker, text = current, line.strip()
    else:
        raise BadLine("expected: @<name> #<channel> <text>  (or @<name> @bot <text> for a DM)")
    actor = f"console:{speaker.name}"
    if speaker.where == "@bot":
        return Command(actor=actor, channel=actor, text=text, is_dm=True), speaker
    return Command(actor=actor, channel=f"console:{speaker.where}", text=text), speaker


class ConsoleAdapter:
    """Reads lines, hands each command to the core, and lets the outbox print the answers.

    After every line it waits for what that line caused to be delivered, so a transcript
    reads in order; at end of input it drains what is left and returns.
    """

    def __init__(
        self,
        handle: Callable[[Command], Awaitable[bool]],
        drain: Callable[[float], Awaitable[dict[str, int]]],
        *,
        stdin: TextIO,
        stderr: TextIO,
        interactive: bool,
        welcome: str = "",
    ) -> None:
        self._handle = handle
        self._drain = drain
        self._stdin = stdin
        self._stderr = stderr
        self._interactive = interactive
        self._welcome = welcome

    async def run(self) -> dict[str, int]:
        """Returns what was still queued, by platform, when input ended."""
        speaker: Speaker | None = None
        if self._interactive and self._welcome:
            self._say(self._welcome)
        number = 0
        lines = self._read_in_background()
        while True:
            if self._interactive:
                self._prompt(speaker)
            line = await lines.get()
            if not line:
                break
            number += 1
            if not line.strip() or line.lstrip().startswith("//"):
                continue
            try:
                command, speaker = parse_line(
                    line.rstrip("\n"), speaker if self._interactive else None
                )
            except BadLine as exc:
                self._say(f"line {number}: {exc}" if not self._interactive else str(exc))
                continue
            await self._handle(command)
            await self._drain(10.0)
        remaining = await self._drain(60.0)
        for platform, count in sorted(remaining.items()):
            where = (
                "waiting to be retried"
                if platform == "console"
                else f"for {platform}, which this process doesn't run"
            )
            messages = "1 message" if count == 1 else f"{count} messages"
            go = "it goes" if count == 1 else "they go"
            self._say(f"{messages} kept in the outbox {where}; {go} out on a later start.")
        return remaining

    def _read_in_background(self) -> asyncio.Queue[str]:
        """Lines from stdin via a daemon thread: a thread blocked reading a terminal must
        not keep the process alive after the bot was told to stop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()

        def read() -> None:
            while True:
                line = self._stdin.readline()
                loop.call_soon_threadsafe(queue.put_nowait, line)
                if not line:
                    return

        threading.Thread(target=read, name="console-stdin", daemon=True).start()
        return queue

    def _prompt(self, speaker: Speaker | None) -> None:
        who = f"{speaker.name} {speaker.where}" if speaker else "@<name> #<channel>"
        self._stderr.write(f"{who}> ")
        self._stderr.flush()

    def _say(self, text: str) -> None:
        self._stderr.write(text + "\n")
        self._stderr.flush()
