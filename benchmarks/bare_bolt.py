"""The baseline for the Slack benchmarks: a bare slack-bolt AsyncApp, served the way the
bot serves its own (adapters.slack.http: aiohttp, POST /slack/events, GET /healthz). On
/tip it acks, then posts one message with chat.postMessage, nothing else.

    python -m benchmarks.bare_bolt --port 3001 --api-url http://127.0.0.1:…/api/ \\
        --token xoxb-test --secret …

The message goes to the channel named by ``category: X`` in the text (``--review-prefix``
+ X), else to ``--review``: the same review channel the bot's policy in the benchmark
routes that tip to.

With ``--database-url`` it is the *durable* bare app, doing the least the design asks of
a bot: before acking it commits the request's text as one row, through the bot's own
database layer (``storage.db.Database``: the same engine options, SQLite pragmas and
one-writer-at-a-time rule), and only then acks, and it posts the card and the officer's
receipt (``chat.postEphemeral``, as the bot's receipts go) together. It measures what
"committed before the officer is told" and the receipt cost by themselves, with none of
the bot's other work (audit chain, routing, similar tips, outbox)."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import Column, Integer, MetaData, Table, Text

from adapters.slack.http import start_http
from storage.db import Database

_CATEGORY = re.compile(r"category:\s*(\w+)")

_metadata = MetaData()
_requests = Table(
    "requests", _metadata, Column("id", Integer, primary_key=True), Column("text", Text)
)


def create_app(args: argparse.Namespace, database: Database | None = None) -> AsyncApp:
    app = AsyncApp(
        client=AsyncWebClient(token=args.token, base_url=args.api_url),
        signing_secret=args.secret,
        name="bare",
    )
    count = 0

    @app.command("/tip")
    async def tip(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        nonlocal count
        if database is not None:
            async with database.transaction() as conn:
                await conn.execute(_requests.insert().values(text=command.get("text", "")))
        await ack()
        count += 1
        found = _CATEGORY.search(command.get("text", ""))
        channel = args.review_prefix + found.group(1).upper() if found else args.review
        card = client.chat_postMessage(
            channel=channel, text=f"T-{count} · NEW · {command.get('text', '')[:200]}"
        )
        if database is None:
            await card
            return
        receipt = client.chat_postEphemeral(
            channel=command["channel_id"], user=command["user_id"], text=f"Received T-{count}."
        )
        await asyncio.gather(card, receipt)

    return app


async def main(args: argparse.Namespace) -> None:
    database = Database(args.database_url) if args.database_url else None
    if database is not None:
        async with database.transaction() as conn:
            await conn.run_sync(_metadata.create_all)
    runner = await start_http(create_app(args, database), args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if database is not None:
            await database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--review", default="C0REVIEW")
    parser.add_argument("--review-prefix", default="C0R")
    parser.add_argument("--database-url", help="commit each request before acking")
    asyncio.run(main(parser.parse_args()))
