"""The baseline for the Slack benchmarks: a bare slack-bolt AsyncApp, served the way the
bot serves its own (adapters.slack.http: aiohttp, POST /slack/events, GET /healthz). On
/tip it acks, then posts one message with chat.postMessage, nothing else.

    python -m benchmarks.bare_bolt --port 3001 --api-url http://127.0.0.1:…/api/ \\
        --token xoxb-test --secret …

The message goes to the channel named by ``category: X`` in the text (``--review-prefix``
+ X), else to ``--review``: the same review channel the bot's policy in the benchmark
routes that tip to."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.http import start_http

_CATEGORY = re.compile(r"category:\s*(\w+)")


def create_app(args: argparse.Namespace) -> AsyncApp:
    app = AsyncApp(
        client=AsyncWebClient(token=args.token, base_url=args.api_url),
        signing_secret=args.secret,
        name="bare",
    )
    count = 0

    @app.command("/tip")
    async def tip(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        nonlocal count
        await ack()
        count += 1
        found = _CATEGORY.search(command.get("text", ""))
        channel = args.review_prefix + found.group(1).upper() if found else args.review
        await client.chat_postMessage(
            channel=channel, text=f"T-{count} · NEW · {command.get('text', '')[:200]}"
        )

    return app


async def main(args: argparse.Namespace) -> None:
    runner = await start_http(create_app(args), args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--review", default="C0REVIEW")
    parser.add_argument("--review-prefix", default="C0R")
    asyncio.run(main(parser.parse_args()))
