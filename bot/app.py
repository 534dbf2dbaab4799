"""The composition root: the one place that builds everything and wires it together.

Tests build the bot through :func:`build` with overrides (a policy, a clock, senders)
instead of patching anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.clock import Clock, SystemClock
from bot.core import Core, PolicyHolder
from bot.delivery import Sender
from bot.digests import send_digests
from bot.outbox_worker import OutboxWorker
from bot.policy import Policy
from bot.policy_loader import load_policy
from bot.retention import purge_expired
from bot.scheduled_alerts import release_due_alerts
from bot.scheduler import BotScheduler, Job
from bot.settings import Settings
from bot.sla import remind_overdue
from commands.context import Command
from commands.dispatch import Dispatcher
from storage.db import Database

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

log = logging.getLogger(__name__)

DEFAULT_JOBS: dict[str, Job] = {
    "scheduled_alerts": release_due_alerts,
    "digests": send_digests,
    "sla": remind_overdue,
    "retention": purge_expired,
}


@dataclass
class FusionBot:
    settings: Settings
    core: Core
    dispatcher: Dispatcher
    worker: OutboxWorker
    scheduler: BotScheduler
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.core.db

    async def handle(self, command: Command) -> bool:
        return await self.dispatcher.handle(command)

    async def start(
        self, *, migrate: bool = True, deliver: bool = True, schedule: bool = True
    ) -> None:
        if migrate:
            await self.db.upgrade()
        if deliver:
            self._tasks.append(asyncio.create_task(self.worker.run(), name="outbox"))
        if schedule:
            await self.scheduler.start()

    async def run_due_jobs(self) -> None:
        """Run every scheduled job once now (tests and the demo move a manual clock)."""
        await self.scheduler.catch_up()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.worker.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        self._tasks.clear()
        await self.db.dispose()

    async def drain(self, seconds: float = 30.0) -> dict[str, int]:
        return await self.worker.drain(seconds)


def platform_senders(settings: Settings) -> dict[str, Sender]:
    """A sender for every platform the settings configure (the console is the CLI's)."""
    senders: dict[str, Sender] = {}
    if settings.slack_bot_token is not None:
        from slack_sdk.web.async_client import AsyncWebClient

        from adapters.slack.sender import SlackSender

        client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url or AsyncWebClient.BASE_URL,
        )
        senders["slack"] = SlackSender(client)
    return senders


def slack_app(bot: FusionBot) -> AsyncApp:
    """The bolt app that turns Slack requests into commands for this bot."""
    from adapters.slack.app import create_slack_app

    settings = bot.settings
    if settings.slack_bot_token is None or settings.slack_signing_secret is None:
        raise ValueError("Slack needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET")
    return create_slack_app(
        bot.handle,
        bot_token=settings.slack_bot_token.get_secret_value(),
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        api_url=settings.slack_api_url,
    )


def build(
    settings: Settings,
    *,
    policy: Policy | None = None,
    clock: Clock | None = None,
    senders: Mapping[str, Sender] | None = None,
    database: Database | None = None,
    jobs: Mapping[str, Job] | None = None,
) -> FusionBot:
    clock = clock or SystemClock()
    holder = PolicyHolder(policy or load_policy(settings.policy), str(settings.policy))
    db = database or Database(settings.effective_database_url)
    core = Core(db=db, policies=holder, clock=clock)
    worker = OutboxWorker(db, senders or {}, clock)
    core.wake_outbox = worker.wake
    scheduler = BotScheduler(core, jobs or DEFAULT_JOBS, database_url=db.url)
    return FusionBot(
        settings=settings,
        core=core,
        dispatcher=Dispatcher(core),
        worker=worker,
        scheduler=scheduler,
    )
