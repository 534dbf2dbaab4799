"""HTTP mode: one aiohttp server for Slack's slash commands, interactivity and events."""

from __future__ import annotations

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def web_app(app: AsyncApp) -> web.Application:
    """POST /slack/events goes to bolt (which verifies the signature); GET /healthz says ok."""

    async def events(request: web.Request) -> web.Response:
        bolt_response = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    application = web.Application()
    application.router.add_post(EVENTS_PATH, events)
    application.router.add_get(HEALTH_PATH, health)
    return application


async def start_http(app: AsyncApp, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    """Serve until ``await runner.cleanup()``; port 0 picks a free one (see runner.addresses)."""
    runner = web.AppRunner(web_app(app), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
