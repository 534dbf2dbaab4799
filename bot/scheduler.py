"""APScheduler 3 with a persistent job store, in the center's time zone.

Jobs only enqueue work, and every job is idempotent and catches up by itself (it works
from what the database says is due, not from when it was called). So a misfire, a
restart, a late run or a second scheduler can't lose or double anything: at worst a job
runs once more and finds nothing to do. On start every job runs once, which is how work
that fell due while the bot was down is caught up (once, not skipped).

APScheduler 3's job store is synchronous and is written on the event loop's thread (each
run of a job moves its next run time). On SQLite it must not write while one of the
bot's own transactions is under way: that transaction holds the database's write lock
while it waits for its next turn of the loop, which the store, waiting for the lock on
the loop's thread, would never give it (the bot frozen for 5 s, the store's write failed,
and APScheduler's timer not restarted: no sweep again until a job was added; found by
benchmarks/burst). So the store is written only between the bot's transactions
(``Database.between_writes``), and a failed pass over the jobs is tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import make_url

from bot.core import Core
from storage.db import Database

log = logging.getLogger(__name__)

Job = Callable[[Core], Awaitable[int]]

# Jobs in a persistent store are kept by reference to an importable function with plain
# arguments; the function finds the running scheduler here by name.
_RUNNING: dict[str, BotScheduler] = {}

RETENTION_CRON = "30 3 * * *"  # nightly, at a quiet hour in the center's time zone
SWEEP_SECONDS = 15  # scheduled alerts and SLA reminders: at most this late
SWEEPS = ("scheduled_alerts", "sla")
# After a pass over the jobs failed (the job store's database unreachable or locked by
# another process): the next try.
RETRY_SECONDS = 5.0


async def fire(scheduler_name: str, job: str) -> None:
    scheduler = _RUNNING.get(scheduler_name)
    if scheduler is not None:
        await scheduler.run(job)


class _BetweenWrites(AsyncIOScheduler):
    """APScheduler's asyncio scheduler, passing over its jobs (and so writing its job
    store) only while none of the bot's write transactions is under way."""

    def __init__(self, db: Database, **options: Any) -> None:
        super().__init__(**options)
        self._db = db
        self._waiting: asyncio.Task[None] | None = None

    def wakeup(self) -> None:
        # APScheduler calls this from any thread (a job added, a timer run out).
        loop = self._eventloop
        if loop is not None:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if not self.running:  # shut down since this wake-up was scheduled
            return
        if not self._db.mid_write():
            self._pass_over_jobs()  # nothing to wait for: as APScheduler itself does
        elif self._waiting is None:  # one waiter does the pass for every wake-up meanwhile
            self._waiting = asyncio.create_task(self._pass_between_writes())

    async def _pass_between_writes(self) -> None:
        try:
            async with self._db.between_writes():
                if self.running:
                    self._pass_over_jobs()
        finally:
            self._waiting = None

    def _pass_over_jobs(self) -> None:
        self._stop_timer()
        try:
            wait = self._process_jobs()
        except Exception:
            # Writing the job store failed (another process held SQLite's lock past its
            # busy timeout; PostgreSQL went away mid-pass). APScheduler would leave its
            # timer stopped, and no job would run again.
            log.exception("scheduler: passing over the jobs failed; trying again soon")
            wait = RETRY_SECONDS
        self._start_timer(wait)

    def stop_waiting(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()


class BotScheduler:
    def __init__(
        self,
        core: Core,
        jobs: Mapping[str, Job],
        *,
        database_url: str,
        name: str = "fusionbot",
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self.core = core
        self.jobs = dict(jobs)
        self.name = name
        self.sweep_seconds = sweep_seconds
        self._store_url = job_store_url(database_url)
        self._scheduler: _BetweenWrites | None = None
        self._listening = False
        self._resyncing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        tz = self.core.policy.center.tz
        self._scheduler = _BetweenWrites(
            self.core.db,
            jobstores={
                "default": SQLAlchemyJobStore(url=self._store_url, tablename="scheduler_jobs")
            },
            timezone=tz,
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
        )
        _RUNNING[self.name] = self
        try:
            # Starting creates the store's table and declaring jobs writes them.
            async with self.core.db.between_writes():
                self._scheduler.start()
                self.sync_jobs()
        except BaseException:
            # The job store's database went away while starting (a leader elected as its
            # connection is cut): leave nothing half-started for the next election.
            await self.stop()
            raise
        if not self._listening:  # a leader elected again must not listen twice
            self.core.policies.on_change(lambda _policy: self._resync())
            self._listening = True
        await self.catch_up()

    def _resync(self) -> None:
        """After a reload: declare the jobs now, or as soon as no transaction is under
        way (the job store's writes, like every pass over the jobs, go between them)."""
        if not self.core.db.mid_write():
            self.sync_jobs()
            return
        task = asyncio.create_task(self._resync_between_writes())
        self._resyncing.add(task)
        task.add_done_callback(self._resyncing.discard)

    async def _resync_between_writes(self) -> None:
        try:
            async with self.core.db.between_writes():
                self.sync_jobs()
        except Exception:
            log.exception("scheduler: declaring the reloaded policy's jobs failed")

    def sync_jobs(self) -> None:
        """(Re)declare the jobs the policy implies; called at start and on every reload."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        policy = self.core.policy
        tz = policy.center.tz
        wanted: dict[str, tuple[object, str]] = {}
        if "digests" in self.jobs:
            for partner in policy.partners:
                wanted[f"digest:{partner.id}"] = (
                    CronTrigger.from_crontab(partner.digest, timezone=tz),
                    "digests",
                )
        for job in self.jobs:
            if job in SWEEPS:
                wanted[job] = (IntervalTrigger(seconds=self.sweep_seconds, timezone=tz), job)
            elif job != "digests":
                # Retention and housekeeping: nightly, at a quiet hour.
                wanted[job] = (CronTrigger.from_crontab(RETENTION_CRON, timezone=tz), job)
        existing = {job.id: job for job in scheduler.get_jobs()}
        for job_id, (trigger, job) in wanted.items():
            current = existing.get(job_id)
            unchanged = current is not None and repr(current.trigger) == repr(trigger)
            if unchanged and tuple(current.args) == (self.name, job):
                # Unchanged. Rewriting every partner's digest job in the (synchronous) job
                # store at each election and reload stalled the bot for seconds at 1,000
                # partners (found by benchmarks/fanout_slack).
                continue
            scheduler.add_job(
                fire, trigger, id=job_id, args=[self.name, job], replace_existing=True
            )
        for job_id, stale in existing.items():
            if job_id not in wanted:
                stale.remove()

    async def catch_up(self) -> None:
        for job in self.jobs:
            await self.run(job)

    async def run(self, job: str) -> int:
        try:
            done = await self.jobs[job](self.core)
        except Exception:
            log.exception("scheduled job %s failed; it runs again at its next time", job)
            return 0
        if done:
            log.info("scheduled job %s: %d done", job, done)
        return done

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self._scheduler.get_jobs()) if self._scheduler else []

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop_waiting()
            if self._scheduler.running:
                self._scheduler.shutdown(wait=False)
        self._scheduler = None
        _RUNNING.pop(self.name, None)


def job_store_url(database_url: str) -> str:
    """APScheduler 3's job store is synchronous: the same database through a sync driver."""
    url = make_url(database_url)
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}[url.get_backend_name()]
    return url.set(drivername=driver).render_as_string(hide_password=False)
