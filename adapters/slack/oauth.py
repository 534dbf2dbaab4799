"""The app installed in partners' own workspaces: Slack's OAuth v2 flow and the tokens it yields.

Installations live in our database through slack_sdk's SQLAlchemy installation store
(tables ``slack_installations`` and ``slack_bots``) and the one-time OAuth states in
``slack_oauth_states``; both use the bot's own async engine (aiosqlite or asyncpg), so
every replica sees an install at once. A channel in a partner's workspace is addressed
``slack:<team_id>/<channel_id>`` and sent to with that workspace's bot token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.authorize_url_generator import AuthorizeUrlGenerator
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

DEFAULT_SCOPES = (
    "chat:write",
    "commands",
    "channels:history",
    "groups:history",
    "im:history",
    "im:write",
    "users:read",
    "app_mentions:read",
)
STATE_EXPIRATION_SECONDS = 600

OnInstalled = Callable[[Installation], Awaitable[None]]


class InstallError(Exception):
    """The install could not be completed; the message is safe to show the installer."""


@dataclass(frozen=True)
class InstalledWorkspace:
    team_id: str
    team_name: str
    bot_user_id: str | None


class SlackInstallations:
    """Installation store, OAuth state store and the two halves of the OAuth flow."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        api_url: str | None = None,
        redirect_uri: str | None = None,
        authorization_url: str = "https://slack.com/oauth/v2/authorize",
        on_installed: OnInstalled | None = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.store = AsyncSQLAlchemyInstallationStore(client_id=client_id, engine=engine)
        self.states = AsyncSQLAlchemyOAuthStateStore(
            expiration_seconds=STATE_EXPIRATION_SECONDS, engine=engine
        )
        self._urls = AuthorizeUrlGenerator(
            client_id=client_id,
            scopes=list(scopes),
            redirect_uri=redirect_uri,
            authorization_url=authorization_url,
        )
        self._api_url = api_url or AsyncWebClient.BASE_URL
        # Callbacks after an install is saved (release held deliveries, audit, …).
        self.on_installed: list[OnInstalled] = [on_installed] if on_installed else []

    async def create_tables(self) -> None:
        """Create the store's tables if missing (slack_sdk's own schema, not Alembic's)."""
        await self.store.create_tables()
        await self.states.create_tables()

    async def token_for_team(self, team_id: str) -> str | None:
        """The newest bot token of the workspace, or None when the app is not installed."""
        bot = await self.store.async_find_bot(enterprise_id=None, team_id=team_id)
        return bot.bot_token if bot is not None else None

    async def authorize_url(self) -> str:
        """Where to send a person who installs the app: Slack's consent page, with a
        one-time state that the redirect must bring back."""
        return self._urls.generate(await self.states.async_issue())

    async def complete(self, *, code: str, state: str) -> InstalledWorkspace:
        """Check the state, exchange the code for the workspace's bot token, save it."""
        if not state or not await self.states.async_consume(state):
            raise InstallError("This install link has expired or was already used.")
        if not code:
            raise InstallError("Slack sent no authorisation code.")
        answer = await self._exchange(code)
        team = answer.get("team") or {}
        team_id = str(team.get("id") or "")
        bot_token = answer.get("access_token")
        if not team_id or not bot_token:
            raise InstallError("Slack's answer named no workspace or bot token.")
        enterprise = answer.get("enterprise") or {}
        authed_user = answer.get("authed_user") or {}
        installation = Installation(
            app_id=answer.get("app_id"),
            enterprise_id=enterprise.get("id"),
            enterprise_name=enterprise.get("name"),
            team_id=team_id,
            team_name=team.get("name"),
            bot_token=str(bot_token),
            bot_user_id=answer.get("bot_user_id"),
            bot_scopes=str(answer.get("scope") or ""),
            user_id=str(authed_user.get("id") or ""),
            user_token=authed_user.get("access_token"),
            user_scopes=str(authed_user.get("scope") or ""),
            is_enterprise_install=bool(answer.get("is_enterprise_install")),
            token_type=answer.get("token_type"),
        )
        await self.store.async_save(installation)
        log.info("slack: installed in workspace %s (%s)", team_id, installation.team_name)
        for callback in self.on_installed:
            await callback(installation)
        return InstalledWorkspace(
            team_id=team_id,
            team_name=str(installation.team_name or team_id),
            bot_user_id=installation.bot_user_id,
        )

    async def _exchange(self, code: str) -> dict[str, Any]:
        # Client credentials as form fields (Slack accepts them there as well as by Basic
        # auth); slack_sdk's oauth_v2_access builds an aiohttp.BasicAuth that aiohttp 3.14
        # deprecates.
        data = {"client_id": self.client_id, "client_secret": self._client_secret, "code": code}
        if self.redirect_uri is not None:
            data["redirect_uri"] = self.redirect_uri
        client = AsyncWebClient(base_url=self._api_url)
        try:
            response = await client.api_call("oauth.v2.access", data=data)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            log.warning("slack: oauth.v2.access refused: %s", error)
            raise InstallError(
                f"Slack refused the install ({error or 'no reason given'})."
            ) from exc
        return dict(response.data) if isinstance(response.data, dict) else {}
