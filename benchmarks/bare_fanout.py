"""The fan-out baseline: a bare slack_sdk AsyncWebClient posting one message to many
channels with a fixed concurrency, as its own process (like the bot), nothing else. Its
calls share one aiohttp session (kept-alive connections), as the bot's sender does: left
to itself, slack_sdk opens a session per call, which made an easier baseline.

    python -m benchmarks.bare_fanout --api-url URL --token T --concurrency 200 \\
        --message message.json C0Q0000 C0Q0001 …

Prints a JSON line: when posting started (time.monotonic(), the same clock in every
process on Linux) and how many posts Slack accepted."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient


async def main(args: argparse.Namespace, message: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=args.token, base_url=args.api_url, session=session)
        await post_all(args, message, client)


async def post_all(
    args: argparse.Namespace, message: dict[str, Any], client: AsyncWebClient
) -> None:
    gate = asyncio.Semaphore(args.concurrency)
    accepted = 0

    async def post(channel: str) -> None:
        nonlocal accepted
        async with gate:
            answer = await client.chat_postMessage(channel=channel, **message)
            accepted += bool(answer.get("ok"))

    started = time.monotonic()
    await asyncio.gather(*(post(c) for c in args.channels))
    print(json.dumps({"started": started, "accepted": accepted}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--message", required=True)
    parser.add_argument("channels", nargs="+")
    arguments = parser.parse_args()
    asyncio.run(main(arguments, json.loads(Path(arguments.message).read_text())))
