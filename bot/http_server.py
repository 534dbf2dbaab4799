"""The bot's HTTP port: health and metrics for operators, and Slack's endpoints when Slack
runs in HTTP mode. Every replica serves it; a load balancer may send Slack to any of them.

``GET /healthz`` answers 200 ``ready`` only when this process has started and its database
answers within two seconds; otherwise 503 ``not ready`` and why. ``GET /metrics`` is the
Prometheus exposition (bot/metrics.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy import text

from bot import metrics
from bot.leadership import Leadership
from storage import outbox_repo

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

    from adapters.slack.oauth import SlackInstallations
    from bot.app import FusionBot

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
DATABASE_TIMEOUT = 2.0


def ops_app(bot: FusionBot, leadership: Leadership) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        answer = {"status": "ready", "role": leadership.role, "database": "ok"}
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT):
                async with bot.db.read() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:
            answer |= {"status": "not ready", "database": f"{type(exc).__name__}: {exc}"[:300]}
        status = 200 if answer["status"] == "ready" else 503
        return web.Response(status=status, text=json.dumps(answer), content_type="application/json")

    async def exposition(request: web.Request) -> web.Response:
        metrics.LEADER.set(1 if leadership.is_leader else 0)
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT):
                async with bot.db.read() as conn:
                    metrics.set_outbox_depth(await outbox_repo.waiting_by_platform(conn))
        except Exception:  # the other metrics are worth serving without the depth
            pass
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE}
        )

    application = web.Application()
    application.router.add_get(HEALTH_PATH, health)
    application.router.add_get(METRICS_PATH, exposition)
    return application


async def serve_http(
    bot: FusionBot,
    leadership: Leadership,
    *,
    host: str,
    port: int,
    slack: AsyncApp | None = None,
    installations: SlackInstallations | None = None,
) -> web.AppRunner:
    """Serve until ``await runner.cleanup()``."""
    application = ops_app(bot, leadership)
    if slack is not None:
        from adapters.slack.http import add_slack_routes

        add_slack_routes(application, slack, installations)
    runner = web.AppRunner(application, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
