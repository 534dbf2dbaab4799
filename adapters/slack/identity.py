"""Who the bot is on its home workspace, asked once at start (auth.test).

bolt would otherwise call auth.test on the first request it serves; if Slack rate-limits
that call, bolt answers the person with "reinstall this app" and the request is lost.
Asking at start, with retries, keeps every Web API call off the request path."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import ClientError
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

PERMANENT = {"invalid_auth", "not_authed", "token_revoked", "account_inactive"}


@dataclass(frozen=True)
class BotIdentity:
    team_id: str
    bot_user_id: str
    bot_id: str | None

    def authorize_result(self, bot_token: str) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=None,
            team_id=self.team_id,
            bot_user_id=self.bot_user_id,
            bot_id=self.bot_id,
            bot_token=bot_token,
        )


async def who_am_i(client: AsyncWebClient, *, attempts: int = 60) -> BotIdentity:
    """auth.test, waiting out rate limits and outages; a bad token fails at once."""
    for attempt in range(1, attempts + 1):
        try:
            answer = await client.auth_test()
            return BotIdentity(
                team_id=str(answer["team_id"]),
                bot_user_id=str(answer["user_id"]),
                bot_id=answer.get("bot_id"),
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error in PERMANENT:
                raise
            wait = float(exc.response.headers.get("Retry-After", 1) or 1)
        except (ClientError, TimeoutError) as exc:
            error, wait = str(exc), 1.0
        log.warning("slack: auth.test failed (%s); retrying in %.0f s (%d)", error, wait, attempt)
        await asyncio.sleep(wait)
    raise RuntimeError("Slack did not answer auth.test; check SLACK_API_URL and the network")
