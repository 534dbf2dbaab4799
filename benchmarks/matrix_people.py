"""The Matrix benchmarks' people and bare baselines, each in a process of its own.

``python -m benchmarks.matrix_people ROLE`` runs one role (below) on its own event loop:
it reads JSON lines on stdin (the first is its configuration) and writes JSON lines on
stdout; logs go to stderr. So the bot's process holds only the bot, a bare baseline's
process only that baseline, and the people (the load generator and the observers) work in
a third, where their syncs and callbacks don't land on either's loop. Times are
``time.monotonic()``, system-wide on Linux, so those from different processes compare."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

# role -> "module:coroutine function(config, link)"
ROLES = {
    "intake": "benchmarks.matrix_intake:people",
    "echo": "benchmarks.matrix_intake:echo",
    "fanout": "benchmarks.fanout_matrix:people",
    "bare": "benchmarks.fanout_matrix:bare",
}
ROOT = Path(__file__).resolve().parent.parent


class Link:
    """One end of the JSON-lines conversation with another process."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        write: Callable[[bytes], Awaitable[None]],
        what: str,
    ) -> None:
        self._reader = reader
        self._write = write
        self.what = what

    async def send(self, message: dict[str, Any]) -> None:
        await self._write(json.dumps(message).encode() + b"\n")

    async def receive(self, within: float = 600.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self._reader.readline(), within)
        if not line:
            raise RuntimeError(f"{self.what}: the other side has gone")
        answer: dict[str, Any] = json.loads(line)
        return answer


@contextlib.asynccontextmanager
async def child(role: str, config: dict[str, Any]) -> AsyncIterator[Link]:
    """Start ``role`` in a process of its own, hand it ``config``, and talk to it; on the
    way out, close its stdin (its cue to finish) and wait for it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.matrix_people",
        role,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=16 * 1024 * 1024,
    )
    assert process.stdin is not None and process.stdout is not None
    stdin = process.stdin

    async def write(data: bytes) -> None:
        stdin.write(data)
        await stdin.drain()

    link = Link(process.stdout, write, f"{role} process")
    try:
        await link.send(config)
        yield link
    finally:
        with contextlib.suppress(Exception):
            stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            process.kill()
            await process.wait()
    if process.returncode:
        raise RuntimeError(f"{role} process exited with {process.returncode}")


async def _serve(role: str) -> None:
    # The protocol gets stdout to itself; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def write(data: bytes) -> None:
        out.write(data)

    link = Link(reader, write, "parent process")
    config = await link.receive()
    module, function = ROLES[role].split(":")
    await getattr(importlib.import_module(module), function)(config, link)


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in ROLES:
        raise SystemExit(f"usage: python -m benchmarks.matrix_people {{{','.join(ROLES)}}}")
    asyncio.run(_serve(sys.argv[1]))


if __name__ == "__main__":
    main()
