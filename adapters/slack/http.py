"""HTTP mode: one aiohttp server for Slack's slash commands, interactivity and events,
and (when client credentials are configured) the OAuth install into other workspaces."""

from __future__ import annotations

import html
import logging

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from adapters.slack.oauth import InstallError, SlackInstallations

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
INSTALL_PATH = "/slack/install"
OAUTH_REDIRECT_PATH = "/slack/oauth_redirect"


def web_app(app: AsyncApp, installations: SlackInstallations | None = None) -> web.Application:
    """Slack's routes (:func:`add_slack_routes`) and a plain GET /healthz; ``fusionbot run``
    serves them beside its own health and metrics (bot/http_server.py)."""

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    application = web.Application()
    application.router.add_get(HEALTH_PATH, health)
    add_slack_routes(application, app, installations)
    return application


def add_slack_routes(
    application: web.Application, app: AsyncApp, installations: SlackInstallations | None = None
) -> None:
    """POST /slack/events goes to bolt (which verifies the signature); with
    ``installations``, GET /slack/install and /slack/oauth_redirect run the install."""

    async def events(request: web.Request) -> web.Response:
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        if not (timestamp.isascii() and timestamp.isdigit()):
            # bolt's signature check does int() on it and answers a 500 with a traceback.
            return web.Response(status=401, text="invalid request")
        try:
            bolt_request = await to_bolt_request(request)
        except (ValueError, TypeError, AttributeError) as exc:
            # bolt parses the body before it checks the signature: a body that isn't
            # Slack's shape (``payload={``, ``payload=[1]``) would otherwise be a 500 and
            # an ERROR traceback per request, for anyone who can reach the port.
            log.warning(
                "slack: refused a request whose body is not Slack's (%s)", type(exc).__name__
            )
            return web.Response(status=400, text="malformed request")
        bolt_response = await app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    application.router.add_post(EVENTS_PATH, events)
    if installations is not None:
        add_install_routes(application, installations)


def add_install_routes(application: web.Application, installations: SlackInstallations) -> None:
    async def install(request: web.Request) -> web.Response:
        raise web.HTTPFound(await installations.authorize_url())

    async def oauth_redirect(request: web.Request) -> web.Response:
        if request.query.get("error"):
            # The person cancelled on Slack's consent page.
            return _page(400, "Not installed", f"Slack said: {request.query['error']}.")
        try:
            installed = await installations.complete(
                code=request.query.get("code", ""), state=request.query.get("state", "")
            )
        except InstallError as exc:
            return _page(400, "Not installed", f"{exc} Start again at {INSTALL_PATH}.")
        except Exception:
            log.exception("slack: completing an install failed")
            return _page(500, "Not installed", "Something went wrong; nothing was saved.")
        return _page(
            200,
            "fusionbot installed",
            f"Installed in {installed.team_name}. Tell the fusion center the channel ids to add "
            f"to the policy as slack:{installed.team_id}/<channel>.",
        )

    application.router.add_get(INSTALL_PATH, install)
    application.router.add_get(OAUTH_REDIRECT_PATH, oauth_redirect)


def _page(status: int, title: str, text: str) -> web.Response:
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html")


async def start_http(
    app: AsyncApp,
    port: int,
    host: str = "127.0.0.1",
    installations: SlackInstallations | None = None,
) -> web.AppRunner:
    """Serve until ``await runner.cleanup()``; port 0 picks a free one (see runner.addresses)."""
    runner = web.AppRunner(web_app(app, installations), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
