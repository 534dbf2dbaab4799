"""The composition root: the one place that builds everything and wires it together.

Tests build the bot through :func:`build` with overrides (a policy, a clock, senders)
instead of patching anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.addresses import split_address
from bot.clock import Clock, SystemClock
from bot.core import Core, PolicyHolder
from bot.delivery import Sender
from bot.digests import send_digests
from bot.messages import Message
from bot.outbox_worker import OnHold, OutboxWorker
from bot.policy import Policy
from bot.policy_loader import load_policy
from bot.retention import purge_expired
from bot.scheduled_alerts import release_due_alerts
from bot.scheduler import BotScheduler, Job
from bot.settings import Settings
from bot.sla import remind_overdue
from commands.context import Command
from commands.dispatch import Dispatcher
from storage import outbox_repo
from storage.audit_repo import append_audit
from storage.db import Database

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

    from adapters.matrix.runtime import MatrixRuntime
    from adapters.slack.oauth import SlackInstallations

log = logging.getLogger(__name__)


async def forget_old_events(core: Core) -> int:
    """Ids of handled Slack and Matrix events are kept a day: long past any redelivery."""
    from storage.handled_events_repo import forget_before

    async with core.db.transaction() as conn:
        return await forget_before(conn, core.clock.now() - timedelta(days=1))


def keep_out_of_full_collections() -> None:
    """Leave every object alive now (modules, the policy, the scheduler's jobs: what the
    process built to serve) out of the garbage collector's full passes from now on.

    A full pass walks every tracked object. With 1,000 partners that is about 175,000
    objects, and each pass held the event loop for 50-60 ms, twice during a fan-out to
    1,000 channels (its first copy waited for one of them). What the process allocates
    later is collected as before; what is frozen here lives as long as the process anyway.
    Call it once the process serves, and again after it takes on more for good (the
    scheduler's jobs on becoming the leader)."""
    gc.collect()
    gc.freeze()


DEFAULT_JOBS: dict[str, Job] = {
    "scheduled_alerts": release_due_alerts,
    "digests": send_digests,
    "sla": remind_overdue,
    "retention": purge_expired,
    "forget_events": forget_old_events,
}


@dataclass
class FusionBot:
    settings: Settings
    core: Core
    dispatcher: Dispatcher
    worker: OutboxWorker
    scheduler: BotScheduler
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Run after the outbox worker has stopped (connections its senders use).
    after_stop: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

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
        if deliver and self.db.dialect == "sqlite":
            # SQLite has one process: rows left "sending" belong to a run that died. Take
            # them now (asking the platform first, as for any uncertain send) instead of
            # waiting out their lease.
            async with self.db.transaction() as conn:
                taken = await outbox_repo.end_leases(conn, now=self.core.clock.now())
            if taken:
                log.info("outbox: %d deliveries a previous run left unfinished resume", taken)
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
        for close in reversed(self.after_stop):
            await close()
        self.after_stop.clear()
        await self.db.dispose()

    async def drain(self, seconds: float = 30.0) -> dict[str, int]:
        return await self.worker.drain(seconds)


def platform_senders(
    settings: Settings, installations: SlackInstallations | None = None
) -> dict[str, Sender]:
    """A sender for every platform the settings configure (the console is the CLI's).
    With ``installations``, Slack targets ``slack:<team>/<channel>`` use that workspace's
    token; without, they are held until the app is installed there."""
    senders: dict[str, Sender] = {}
    if settings.slack_bot_token is not None:
        from slack_sdk.web.async_client import AsyncWebClient

        from adapters.slack.sender import SlackSender

        client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url or AsyncWebClient.BASE_URL,
        )
        lookup = installations.token_for_team if installations is not None else None
        senders["slack"] = SlackSender(client, token_for_team=lookup)
    return senders


def slack_installations(settings: Settings, db: Database) -> SlackInstallations | None:
    """The app's installations in other workspaces, kept in ``db``; None unless
    SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are set. Call ``await create_tables()`` once
    at start, and ``attach_installations`` to resume held deliveries after an install."""
    if settings.slack_client_id is None or settings.slack_client_secret is None:
        return None
    from adapters.slack.oauth import SlackInstallations

    return SlackInstallations(
        db.engine,
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        scopes=settings.slack_scope_list,
        api_url=settings.slack_api_url,
        redirect_uri=settings.slack_redirect_uri,
    )


def attach_installations(bot: FusionBot, installations: SlackInstallations) -> None:
    """After a (re)install, deliveries held for that workspace are due again."""

    async def release(installation: object) -> None:
        team_id = str(getattr(installation, "team_id", "") or "")
        if not team_id:
            return
        now = bot.core.clock.now()
        async with bot.db.transaction() as conn:
            released = await outbox_repo.release_held(
                conn, target_prefix=f"slack:{team_id}/", now=now
            )
            await append_audit(
                conn,
                at=now,
                actor="system:fusionbot",
                action="slack.installed",
                subject=f"slack:{team_id}",
                details={
                    "team_name": str(getattr(installation, "team_name", "") or ""),
                    "released": released,
                },
            )
        if released:
            log.info("slack: %d held deliveries to %s resume", released, team_id)
        bot.worker.wake()

    installations.on_installed.append(release)


def held_notices(core: Core) -> OnHold:
    """Tell the analysts, once per target and day, in every review channel, that
    deliveries to a place are held and what fixes it."""

    async def notify(conn: AsyncConnection, row: outbox_repo.OutboxRow, error: str) -> None:
        if row.key.startswith("held:"):
            return  # a notice that can't be delivered itself: no notices about notices
        policy = core.policy
        now = core.clock.now()
        day = now.astimezone(policy.center.tz).date().isoformat()
        reason = _short_reason(error)
        platform, rest = split_address(row.target)
        if platform == "slack" and "/" in rest:
            fix = "Reinstall fusionbot in that workspace (/slack/install); nothing is lost."
        else:
            fix = "Restore the bot's access there; nothing is lost."
        message = Message(text=f"Deliveries to {row.target} are held: {reason}. {fix}")
        for channel in policy.review_channels:
            if channel == row.target:
                continue
            await outbox_repo.enqueue_post(
                conn,
                target=channel,
                message=message,
                now=now,
                key=f"held:{row.target}:{day}:{channel}",
            )

    return notify


def _short_reason(error: str) -> str:
    """``chat.postMessage: token_revoked`` -> ``token_revoked``."""
    method, sep, reason = error.partition(": ")
    return reason if sep and " " not in method else error


async def slack_app(bot: FusionBot) -> AsyncApp:
    """The bolt app that turns Slack requests into commands for this bot. Asks Slack who
    the bot is first (waiting out rate limits), so no request pays for that."""
    from slack_sdk.web.async_client import AsyncWebClient

    from adapters.slack.app import create_slack_app
    from adapters.slack.identity import who_am_i
    from storage.handled_events_repo import first_time

    async def seen_before(event_id: str) -> bool:
        async with bot.db.transaction() as conn:
            return not await first_time(conn, event_id, now=bot.core.clock.now())

    settings = bot.settings
    if settings.slack_bot_token is None or settings.slack_signing_secret is None:
        raise ValueError("Slack needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET")
    token = settings.slack_bot_token.get_secret_value()
    client = AsyncWebClient(token=token, base_url=settings.slack_api_url or AsyncWebClient.BASE_URL)
    identity = await who_am_i(client)
    return create_slack_app(
        bot.handle,
        bot_token=token,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        api_url=settings.slack_api_url,
        seen_before=seen_before,
        identity=identity,
    )


async def start_matrix(bot: FusionBot) -> MatrixRuntime:
    """Log the bot in to its homeserver and start the sync loop; the Matrix sender joins
    the outbox once the first sync is done. The caller stops the runtime, then the bot,
    then closes the runtime (its client serves the outbox worker until that stops)."""
    from adapters.matrix.runtime import MatrixRuntime
    from adapters.matrix.session import MatrixAccount

    settings = bot.settings
    if settings.matrix_homeserver is None or settings.matrix_user_id is None:
        raise ValueError("Matrix needs MATRIX_HOMESERVER and MATRIX_USER_ID")
    account = MatrixAccount(
        homeserver=settings.matrix_homeserver,
        user_id=settings.matrix_user_id,
        password=_secret(settings.matrix_password),
        access_token=_secret(settings.matrix_access_token),
        device_id=settings.matrix_device_id,
    )
    runtime = await MatrixRuntime.start(
        account, bot.core, bot.handle, settings.data_dir, bot.worker.add_sender
    )
    return runtime


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


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
    worker = OutboxWorker(db, senders or {}, clock, on_hold=held_notices(core))
    core.wake_outbox = worker.wake
    core.outbox_hand_over = worker.hand_over
    core.take_outbox_rows = worker.take
    core.give_back_outbox_rows = worker.give_back
    scheduler = BotScheduler(core, jobs or DEFAULT_JOBS, database_url=db.url)
    return FusionBot(
        settings=settings,
        core=core,
        dispatcher=Dispatcher(core),
        worker=worker,
        scheduler=scheduler,
    )
