"""Delivers outbox rows: paced per channel, retried with backoff, never lost, never doubled."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bot import metrics
from bot.addresses import platform_of
from bot.clock import Clock
from bot.delivery import (
    HoldDelivery,
    Outgoing,
    PermanentFailure,
    RateLimited,
    Sender,
    TemporaryFailure,
)
from bot.scope_pace import ScopePace
from storage import outbox_repo as repo
from storage.audit_repo import append_audit
from storage.db import Database

log = logging.getLogger(__name__)


class _HeldBack(RateLimited):
    """Not sent: its scope is waiting out a Retry-After another send met."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after, "waiting for Retry-After")


SYSTEM_ACTOR = "system:fusionbot"

# Called inside the transaction that holds a row (row, reason): tell someone who can act.
OnHold = Callable[[AsyncConnection, repo.OutboxRow, str], Awaitable[None]]


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        senders: Mapping[str, Sender],
        clock: Clock,
        *,
        lease: timedelta = timedelta(minutes=5),
        max_attempts: int = 8,
        max_backoff: float = 300.0,
        per_target_batch: int = 30,
        poll_interval: float = 1.0,
        concurrency: int = 200,
        on_hold: OnHold | None = None,
    ) -> None:
        self.db = db
        self.senders = dict(senders)
        self.clock = clock
        self.lease = lease
        self.max_attempts = max_attempts
        self.max_backoff = max_backoff
        self.per_target_batch = per_target_batch
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self.on_hold = on_hold
        self._wake = asyncio.Event()
        # Bumped by every wake-up that may mean new due rows (a commit, a timer); a claim
        # that came back short while it stood still means nothing more is due now.
        self._news = 0
        self._maybe_due = True
        # Take over rows whose lease ran out (a dead process's) on the next claim: at the
        # start, and on the timed passes, since leases run out with time, not on commits.
        self._reclaim = True
        # One task per target works through that target's claimed rows, in order; rows
        # claimed while it runs join its queue.
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._queues: dict[str, deque[repo.OutboxRow]] = {}
        # Targets waiting out their pace, or for their delivery to be recorded: they hold
        # rows but no send slot.
        self._pacing: set[str] = set()
        self._recording_for: set[str] = set()
        # Targets with due rows left in the database (their queue was full): claimed for
        # again when their task ends.
        self._deferred: set[str] = set()
        # Platform calls in flight, at most ``concurrency``: a slot is held for one call,
        # never while a target waits for its pace.
        self._slots = asyncio.Semaphore(concurrency)
        # When each target may next be sent to, by the platform's pace (loop time).
        self._gate: dict[str, float] = defaultdict(float)
        # Rate-limit scopes (a target, or all a platform counts against one limit:
        # Sender.rate_scope) that answered "rate limited": nothing in them goes before this.
        self._retry_at: dict[str, datetime] = {}
        # Each scope's sends lately, and its pace once it has answered "rate limited".
        self._paces: dict[str, ScopePace] = defaultdict(ScopePace)
        self._stopping = False
        self._stopped = asyncio.Event()  # set with _stopping: wakes targets waiting to send
        self._running = False
        # The background loop and drain() may both dispatch; one at a time keeps a target
        # from getting two tasks (and two messages out of order).
        self._dispatching = asyncio.Lock()
        # Deliveries sent but not yet recorded, and the lock of the one task recording them.
        self._unrecorded: list[tuple[int, str | None, datetime]] = []
        self._recording = asyncio.Lock()
        # Rows this process's commits inserted leased to it (hand_over()), oldest first,
        # waiting for room: they need no claim.
        self._handed: deque[repo.OutboxRow] = deque()
        # Give-backs started from synchronous code, held until done: the event loop keeps
        # only weak references to tasks, and one collected midway would give nothing back.
        self._giving_back: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Something was queued (or became deliverable): claim soon."""
        self._news += 1
        self._maybe_due = True
        self._wake.set()

    def hand_over(self) -> repo.HandOver | None:
        """For a transaction about to queue messages (``Core.transaction``): posts due now
        for a platform this worker serves are inserted leased to this process, and
        :meth:`take` them after the commit. None unless the worker runs."""
        if not self._running or self._stopping or not self.senders:
            return None
        return repo.HandOver(platforms=frozenset(self.senders), lease=self.lease)

    def take(self, rows: list[repo.OutboxRow]) -> None:
        """Rows a committed transaction inserted leased to this process: delivered like
        claimed ones, without the claim."""
        self._handed.extend(rows)
        if self._running:
            self._wake.set()
        else:  # stopped meanwhile: back to the queue, for whoever delivers next
            self._in_background(self._release_handed())

    def give_back(self, rows: list[repo.OutboxRow]) -> None:
        """Rows a transaction inserted leased to this process whose commit may or may not
        have happened (the connection failed during it): if it did, they go back to the
        queue now and are claimed as usual; if not, there is nothing to give back."""
        self._in_background(self._release([r.id for r in rows]))

    def _in_background(self, giving_back: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(giving_back)
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    def add_sender(self, sender: Sender) -> None:
        """A platform that connects after the start (Matrix, once its first sync is done)."""
        self.senders[sender.platform] = sender
        if self._running:
            _keep_connections(sender)
        self.wake()

    def remove_sender(self, platform: str) -> None:
        """A platform this process no longer serves (a deposed leader's Matrix): its rows
        wait for the process that does."""
        self.senders.pop(platform, None)

    async def run(self) -> None:
        """Deliver until stopped; woken after every commit that queued something."""
        self._running = True
        for sender in list(self.senders.values()):
            _keep_connections(sender)
        try:
            await self._run()
        finally:
            self._running = False
            for sender in list(self.senders.values()):
                close = getattr(sender, "aclose", None)
                if close is not None:
                    await close()

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before the pass, not after: a commit that lands while the pass is
            # claiming wakes the next one, instead of waiting for the poll.
            self._wake.clear()
            try:
                await self._dispatch()
            except Exception:  # the worker must outlive a database hiccup
                log.exception("outbox pass failed; retrying shortly")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                self._reclaim = True
                self.wake()  # rows come due with time (retries, scheduled sends, leases)
        await self._finish_busy()
        await self._release_handed()
        for pace in self._paces.values():
            pace.close()

    async def _release_handed(self) -> None:
        """Rows handed over but not started when the worker stops go back to the queue
        (else they would wait for their lease to run out)."""
        while self._handed:
            ids = [row.id for row in self._handed]
            self._handed.clear()
            await self._release(ids)

    async def _release(self, ids: list[int]) -> None:
        try:
            async with self.db.transaction() as conn:
                await repo.release(conn, ids)
        except Exception:  # their lease runs out instead; they are taken over then
            log.exception("giving back %d handed-over outbox rows failed", len(ids))
        else:
            self.wake()

    async def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        self._wake.set()

    async def drain(self, seconds: float = 30.0) -> dict[str, int]:
        """Deliver everything due now and wait for it; returns what remains queued for
        later (backing off, or for a platform this process doesn't run), by platform."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._reclaim = True
        self.wake()
        while loop.time() < deadline:
            claimed = await self._dispatch()
            if self._busy:
                await asyncio.wait(
                    list(self._busy.values()),
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                continue
            if not claimed and not self._maybe_due:
                break
        await self._finish_busy()
        async with self.db.read() as conn:
            return await repo.waiting_by_platform(conn)

    async def _finish_busy(self) -> None:
        while self._busy:
            await asyncio.gather(*list(self._busy.values()), return_exceptions=True)

    async def _dispatch(self) -> int:
        """Claim due rows while there is room; one task per target."""
        if not self.senders:
            self._maybe_due = False  # add_sender() wakes the worker
            return 0
        async with self._dispatching:
            claimed = 0
            if self._handed:
                await self._release_stale_handed()
            while self._maybe_due or self._handed:
                # Rows wanting a send slot: one per target, unless it waits for its pace.
                # Up to ``concurrency`` more are kept ready behind the slots, so a freed
                # slot is taken at once; claiming waits until half of that room is free
                # (fewer, larger claims), or claims at once when nothing waits.
                wanting = len(self._busy) - len(self._pacing) - len(self._recording_for)
                room = 2 * self.concurrency - wanting
                if room <= 0:
                    break
                if not self._maybe_due:
                    # Nothing older waits in the database: rows handed over go now.
                    started = await self._start_handed(min(room, self.concurrency))
                    claimed += started
                    if not started:
                        break
                    continue
                if wanting and room < max(1, self.concurrency // 2):
                    break
                # At most ``concurrency`` rows a claim: the first sends start while the
                # next claim is made (claiming 400 rows takes ~3 times as long as 200).
                asked = min(room, self.concurrency)
                news = self._news
                got = await self._claim_and_start(asked)
                claimed += got
                if got < asked:
                    if news == self._news:
                        self._maybe_due = False
                    if self._maybe_due or not self._handed:
                        break
            return claimed

    async def _claim_and_start(self, limit: int) -> int:
        now = self.clock.now()
        # Targets being worked on take new rows into their queue, up to a batch; those
        # with a full queue or rows already left behind are claimed for when they end.
        skip = [
            t
            for t, q in self._queues.items()
            if t in self._deferred or len(q) >= self.per_target_batch
        ]
        self._deferred.update(skip)
        async with self.db.transaction() as conn:
            rows = await repo.claim_due(
                conn,
                now=now,
                lease=self.lease,
                platforms=self.senders.keys(),
                busy_targets=skip,
                limit=limit,
                reclaim=self._reclaim,
            )
            self._reclaim = False
            by_target: dict[str, list[repo.OutboxRow]] = defaultdict(list)
            for row in rows:
                by_target[row.target].append(row)
            extra: list[int] = []
            for target, group in by_target.items():
                room = self.per_target_batch - len(self._queues.get(target, ()))
                if len(group) > room:
                    extra.extend(r.id for r in group[room:])
                    del group[room:]
                    self._deferred.add(target)
            await repo.release(conn, extra)
        for target, group in by_target.items():
            self._start(target, group)
        return len(rows)

    def _start(self, target: str, rows: list[repo.OutboxRow]) -> None:
        queue = self._queues.get(target)
        if queue is not None:
            queue.extend(rows)  # its task, still running, takes them in turn
            return
        self._queues[target] = deque(rows)
        self._busy[target] = asyncio.create_task(self._deliver_all(target))

    async def _start_handed(self, limit: int) -> int:
        """Start up to ``limit`` handed-over rows, oldest first. Rows for a target with
        due rows left in the database (deferred) or a full queue go back to the database
        (its order: they are claimed after those), as do rows that waited for room half
        their lease: a row is never kept in memory past its lease (another process would
        take it over)."""
        started = 0
        back: list[int] = []
        while self._handed and started < limit:
            row = self._handed.popleft()
            target = row.target
            queue = self._queues.get(target)
            if target in self._deferred or (
                queue is not None and len(queue) >= self.per_target_batch
            ):
                self._deferred.add(target)  # claimed for when its task ends
                back.append(row.id)
                continue
            self._start(target, [row])
            started += 1
        if back:
            await self._release(back)
        return started

    async def _release_stale_handed(self) -> None:
        stale = self.clock.now() - self.lease / 2
        back: list[int] = []
        while self._handed and self._handed[0].created_at < stale:
            back.append(self._handed.popleft().id)
        if back:
            await self._release(back)

    async def _deliver_all(self, target: str) -> None:
        queue = self._queues[target]
        try:
            sender = self.senders.get(platform_of(target))
            if sender is not None:
                await self._deliver_queue(sender, target, queue)
            # Left when the platform went away meanwhile, or the worker stops while the
            # target waits for its pace: back to the queue, for whoever delivers next.
            while queue:  # rows that join it during the release go back too
                rows = list(queue)
                queue.clear()
                async with self.db.transaction() as conn:
                    await repo.release(conn, [r.id for r in rows])
        finally:
            # Synchronously with the task's end: a claim after this starts a new task.
            del self._busy[target], self._queues[target]
            if target in self._deferred:
                self._deferred.discard(target)
                self.wake()  # it has more due rows
            else:
                self._wake.set()  # room for more

    async def _deliver_queue(
        self, sender: Sender, target: str, queue: deque[repo.OutboxRow]
    ) -> None:
        loop = asyncio.get_running_loop()
        while queue:
            row = queue[0]
            scope = sender.rate_scope(target, row.op, ephemeral=row.ephemeral_to is not None)
            retry_at = self._retry_at.get(scope)
            if retry_at is not None:
                if retry_at > self.clock.now():
                    # The platform asked for a pause: rows claimed meanwhile wait with the
                    # others (a new card must not meet the same 429). Taken out of the
                    # queue before the await: rows that join it meanwhile go round again.
                    rows = list(queue)
                    queue.clear()
                    await self._give_back(rows, retry_at, "waiting for Retry-After")
                    continue
                del self._retry_at[scope]
            # A channel's posting pace (Slack: about one message a second) is for messages
            # everyone sees. Answers only their asker sees (chat.postEphemeral; Matrix
            # replies) don't wait for it, nor hold it up: during a burst of tips an
            # officer's receipt must not queue behind everyone else's.
            paced = row.ephemeral_to is None
            wait = self._gate[target] - loop.time()
            if paced and wait > 0 and not await self._wait_paced(target, asyncio.sleep(wait)):
                return  # stopping: _deliver_all gives the rows back
            # The scope's pace, once it has answered 429 (bot/scope_pace.py): the send
            # waits in line for its turn; a turn far off is waited for in the database,
            # not in memory past part of the lease.
            pace = self._paces[scope]
            if pace.paced(loop.time()):
                turn = pace.expected_wait(loop.time())
                if turn > self.lease.total_seconds() / 4:
                    rows = list(queue)
                    queue.clear()
                    at = self.clock.now() + timedelta(seconds=turn)
                    await self._give_back(rows, at, "waiting for the platform's pace")
                    continue
                if not await self._wait_paced(target, pace.turn()):
                    return
            try:
                await self._deliver(sender, row, scope)
            except RateLimited as exc:
                # This row and the ones after it wait for the platform's Retry-After; the
                # rows' next attempt time keeps every process from trying before then.
                if not isinstance(exc, _HeldBack):  # the platform's own answer
                    metrics.DELIVERIES.labels(sender.platform, "rate_limited").inc()
                    rate = pace.limited(loop.time(), exc.retry_after)
                    if rate is not None:
                        log.info("%s answered rate limited: pacing it at %.1f/s", scope, rate)
                at = self.clock.now() + timedelta(seconds=exc.retry_after)
                # Sends in flight in the same scope may answer 429 too: the later time holds.
                at = max(at, self._retry_at.get(scope, at))
                self._retry_at[scope] = at
                rows = list(queue)
                queue.clear()
                await self._give_back(rows, at, str(exc))
                continue
            except Exception:
                log.exception("delivering outbox row %s to %s failed", row.id, target)
                await self._retry(row, "internal error (see log)")
            queue.popleft()
            if paced:
                gap = sender.min_interval(target)
                self._gate[target] = max(self._gate[target], loop.time() + gap)

    async def _wait_paced(self, target: str, waiting: Awaitable[Any]) -> bool:
        """Wait for a target's own pace (Slack: a second a channel) or its scope's turn,
        holding no send slot; False if the worker is stopping meanwhile (a scope's turn
        may be seconds away: a stop doesn't wait for it)."""
        self._pacing.add(target)
        self._wake.set()  # a slot's worth of room while this target waits
        waited = asyncio.ensure_future(waiting)
        stopping = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait((waited, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._pacing.discard(target)
            stopping.cancel()
            waited.cancel()  # a turn not yet had gives up its place in line
        return not waited.cancelled()

    async def _deliver(self, sender: Sender, row: repo.OutboxRow, scope: str) -> None:
        out = Outgoing(
            target=row.target,
            message=row.message,
            key=row.key,
            ephemeral_to=row.ephemeral_to,
            message_key=row.message_key,
        )
        try:
            if row.op == "post":
                # An earlier attempt whose outcome is unknown (timeout, crash) may have
                # arrived: ask the platform before sending again.
                uncertain = row.reclaimed or row.attempts > 0
                async with self._slots:
                    self._check_hold(scope)
                    ref = await sender.find_sent(out) if uncertain else None
                    if ref is None:
                        ref = await sender.post(out)
                        self._paces[scope].accepted(asyncio.get_running_loop().time())
                await self._sent(row, ref)
                return
            original = await self._original_ref(row)
            if original is None:
                return
            async with self._slots:
                self._check_hold(scope)
                if row.op == "edit":
                    await sender.edit(out, original)
                else:
                    await sender.delete(out, original)
                self._paces[scope].accepted(asyncio.get_running_loop().time())
            await self._sent(row, original)
        except RateLimited:
            raise
        except HoldDelivery as exc:
            metrics.DELIVERIES.labels(sender.platform, "held").inc()
            await self._hold(row, str(exc))
        except PermanentFailure as exc:
            metrics.DELIVERIES.labels(sender.platform, "failed").inc()
            await self._fail(row, str(exc))
        except TemporaryFailure as exc:
            metrics.DELIVERIES.labels(sender.platform, "retried").inc()
            await self._retry(row, str(exc))

    def _check_hold(self, scope: str) -> None:
        """Hold the send back if its scope answered 429 while it waited for a slot: in a
        fan-out hundreds wait, and each would be refused too."""
        retry_at = self._retry_at.get(scope)
        if retry_at is not None and retry_at > self.clock.now():
            raise _HeldBack((retry_at - self.clock.now()).total_seconds())

    async def _original_ref(self, row: repo.OutboxRow) -> str | None:
        """The ref of the message an edit or delete applies to; waits while it is queued."""
        assert row.message_key is not None
        async with self.db.read() as conn:
            status = await repo.post_status(conn, row.message_key, row.target)
        if status is not None and status[0] == repo.SENT and status[1]:
            return status[1]
        if status is not None and status[0] in (repo.PENDING, repo.SENDING, repo.HELD):
            async with self.db.transaction() as conn:
                await repo.reschedule(
                    conn,
                    row.id,
                    at=self.clock.now() + timedelta(seconds=1),
                    error="waiting for the original message",
                    count_attempt=False,
                )
            return None
        await self._fail(row, "the original message was never delivered")
        return None

    async def _sent(self, row: repo.OutboxRow, ref: str | None) -> None:
        """Record a delivery; returns once it is committed. Rows sent meanwhile by other
        targets' tasks are committed together (group commit): a fan-out to 1,000 channels
        takes a few transactions, not 1,000. A crash before the commit leaves the rows
        leased, and their reclaim asks the platform first, as for any uncertain send."""
        metrics.DELIVERIES.labels(platform_of(row.target), "sent").inc()
        self._unrecorded.append((row.id, ref, self.clock.now()))
        self._recording_for.add(row.target)
        self._wake.set()  # its send slot is free: room to claim more
        try:
            await self._record_until_done(row)
        finally:
            self._recording_for.discard(row.target)

    async def _record_until_done(self, row: repo.OutboxRow) -> None:
        """A delivery that happened is recorded, not retried: the record is tried again
        (the row stays leased to this process meanwhile) until it commits. Retried as a
        failed delivery instead, it would be sent again wherever the platform can't be
        asked whether it arrived (an officer's receipt in Slack is ephemeral: not in any
        history), as it was when a cut database connection met the record. Only a process
        that can't record for half the lease, or is stopping, gives up: the row then goes
        the way of a failed delivery (retried, checked before a resend where it can be)."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.lease.total_seconds() / 2
        pause = 0.05
        while True:
            try:
                await self._record()
                return
            except Exception as exc:
                if self._stopping or loop.time() + pause >= give_up_at:
                    self._forget_unrecorded(row)
                    raise
                log.warning("recording outbox row %s as sent failed (%s); retrying", row.id, exc)
            await asyncio.sleep(pause)
            pause = min(2 * pause, 2.0)

    async def _record(self) -> None:
        async with self._recording:
            if not self._unrecorded:
                return  # the task that held the lock recorded ours too
            batch, self._unrecorded = self._unrecorded, []
            try:
                async with self.db.one_statement() as conn:  # no BEGIN/COMMIT trips
                    await repo.mark_sent_many(conn, batch)
            except BaseException:
                # Every delivery of the batch waits for the next try to record it (marking
                # a row sent twice is harmless).
                self._unrecorded[:0] = batch
                raise

    def _forget_unrecorded(self, row: repo.OutboxRow) -> None:
        self._unrecorded = [entry for entry in self._unrecorded if entry[0] != row.id]

    async def _give_back(self, rows: list[repo.OutboxRow], at: datetime, error: str) -> None:
        async with self.db.transaction() as conn:
            for row in rows:
                await repo.reschedule(conn, row.id, at=at, error=error, count_attempt=False)

    async def _retry(self, row: repo.OutboxRow, error: str) -> None:
        attempts = row.attempts + 1
        if attempts >= self.max_attempts:
            await self._fail(row, f"gave up after {attempts} attempts: {error}")
            return
        delay = min(self.max_backoff, 2.0**attempts) * random.uniform(0.8, 1.2)
        async with self.db.transaction() as conn:
            await repo.reschedule(
                conn,
                row.id,
                at=self.clock.now() + timedelta(seconds=delay),
                error=error,
                count_attempt=True,
            )

    async def _fail(self, row: repo.OutboxRow, error: str) -> None:
        log.warning("outbox row %s to %s failed for good: %s", row.id, row.target, error)
        async with self.db.transaction() as conn:
            await repo.mark_final(conn, row.id, state=repo.FAILED, error=error)
            await append_audit(
                conn,
                at=self.clock.now(),
                actor=SYSTEM_ACTOR,
                action="delivery.failed",
                subject=row.message_key or f"outbox:{row.id}",
                details={"target": row.target, "op": row.op, "error": error},
            )

    async def _hold(self, row: repo.OutboxRow, error: str) -> None:
        async with self.db.transaction() as conn:
            await repo.mark_final(conn, row.id, state=repo.HELD, error=error)
            await append_audit(
                conn,
                at=self.clock.now(),
                actor=SYSTEM_ACTOR,
                action="delivery.held",
                subject=row.message_key or f"outbox:{row.id}",
                details={"target": row.target, "error": error},
            )
            if self.on_hold is not None:
                await self.on_hold(conn, row, error)
        if self.on_hold is not None:
            self.wake()  # the notice it queued


def _keep_connections(sender: Sender) -> None:
    """While the worker runs, a sender that can may keep its connections open between
    sends (the next card reuses it); the worker closes them (``aclose``) when it stops."""
    keep = getattr(sender, "keep_connections", None)
    if keep is not None:
        keep()
