"""Digests and scheduled alerts with a controlled clock, across restarts and schedulers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from bot.clock import ManualClock
from bot.digests import latest_fire
from storage.audit_repo import load_audit
from storage.db import Database
from storage.tables import alerts
from tests.harness import ConsoleHarness, lines_for
from tests.test_alerts import ALERT_POLICY, TIP, alert_policy

# 2026-11-25 10:00 in New York (EST, UTC-5); transit's digest is "0 7 * * *" there.
START = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
NEXT_DIGEST = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # 07:00 EST


async def filed_and_claimed(db: Database, clock: ManualClock) -> ConsoleHarness:
    h = ConsoleHarness(db, policy=alert_policy(), clock=clock)
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    return h


async def tick(h: ConsoleHarness) -> list[str]:
    before = len(h.printed)
    await h.bot.run_due_jobs()
    await h.bot.drain()
    return h.printed[before:]


async def test_digest_partner_gets_one_digest_at_its_time_and_nothing_twice(db) -> None:
    clock = ManualClock(START)
    h = await filed_and_claimed(db, clock)
    out = await h.say(
        "@ana #review !approve T-1 tlp:green to:metro-pd,transit confirm title: Fence photos"
    )
    assert lines_for(out, "#metro-pd") and not lines_for(out, "#transit")
    log = (await h.say("@ana #review !alert A-1"))[0]
    assert (
        "console:#transit (transit) — waiting for the partner's next digest, due 2026-11-26 07:00 EST"
        in log
    )

    clock.set(NEXT_DIGEST - timedelta(minutes=1))
    assert await tick(h) == []
    clock.set(NEXT_DIGEST)
    out = await tick(h)
    [digest] = lines_for(out, "#transit")
    assert digest.startswith(
        "#transit [TLP:GREEN]\n    Digest for Regional Transit Authority · 2026-11-26 07:00 EST · 1 alert"
    )
    assert "A-1 · TLP:GREEN · Fence photos\n" in digest  # as released: not marked UPDATED
    assert "Man photographing the substation fence" in digest

    assert await tick(h) == []  # a second run in the same period sends nothing
    log = (await h.say("@ana #review !alert A-1"))[0]
    assert "console:#transit (transit) — in the digest of 2026-11-26 07:00 EST" in log
    clock.advance(timedelta(days=1))
    assert await tick(h) == []  # an empty period sends nothing


async def test_one_digest_lists_every_alert_of_the_period_with_its_marking(db) -> None:
    clock = ManualClock(START)
    h = await filed_and_claimed(db, clock)
    await h.say("@ana #review !approve T-1 tlp:green to:transit confirm")
    await h.say("@olly #tips !tip Drone over the rail yard | category: survl | region: north")
    await h.say("@ana #review !claim T-2")
    await h.say("@ana #review !approve T-2 tlp:clear to:transit confirm title: Rail yard drone")
    clock.set(NEXT_DIGEST + timedelta(minutes=5))
    [digest] = lines_for(await tick(h), "#transit")
    assert "2 alerts" in digest and digest.startswith("#transit [TLP:GREEN]")
    assert "A-1 · TLP:GREEN" in digest and "A-2 · TLP:CLEAR · Rail yard drone" in digest


async def test_timing_digest_puts_an_immediate_partners_copy_in_its_digest(db) -> None:
    clock = ManualClock(START)
    h = await filed_and_claimed(db, clock)
    out = await h.say("@ana #review !approve T-1 tlp:amber to:metro-pd digest confirm")
    assert not lines_for(out, "#metro-pd")
    assert "0 deliveries now, 2 in digests" in lines_for(out, "@ana")[0]
    clock.set(NEXT_DIGEST)
    out = await tick(h)
    assert len(lines_for(out, "#metro-pd")) == 1 and len(lines_for(out, "#metro-pd-internal")) == 1


async def test_red_never_waits_in_a_digest(db) -> None:
    h = await filed_and_claimed(db, ManualClock(START))
    out = await h.say("@sam #review !claim T-1")
    out = await h.say("@sam #review !approve T-1 tlp:red to:state-police digest confirm")
    assert lines_for(out, "@trooper")


async def test_digest_after_downtime_is_caught_up_once(db, database_url) -> None:
    clock = ManualClock(START)
    h = await filed_and_claimed(db, clock)
    await h.say("@ana #review !approve T-1 tlp:green to:transit confirm")
    await h.bot.db.dispose()  # the bot goes down before the digest time...

    clock.set(NEXT_DIGEST + timedelta(days=2, hours=3))  # ...and comes back three digests later
    restarted = ConsoleHarness(Database(database_url), policy=alert_policy(), clock=clock)
    out = await tick(restarted)
    assert len(lines_for(out, "#transit")) == 1
    assert "2026-11-28 07:00 EST" in out[0]  # the latest period, listing what waited
    assert await tick(restarted) == []
    await restarted.bot.db.dispose()


async def test_scheduled_alert_survives_a_restart_across_its_time(db, database_url) -> None:
    clock = ManualClock(START)
    h = await filed_and_claimed(db, clock)
    out = await h.say("@ana #review !approve T-1 tlp:amber to:metro-pd at:2026-11-25T16:00 confirm")
    assert "scheduled for 2026-11-25 16:00 EST" in lines_for(out, "@ana")[0]
    assert not lines_for(out, "#metro-pd")
    log = (await h.say("@ana #review !alert A-1"))[0]
    assert "console:#metro-pd (metro-pd) — scheduled for 2026-11-25 16:00 EST" in log
    clock.set(datetime(2026, 11, 25, 20, 59, tzinfo=UTC))
    assert lines_for(await tick(h), "#metro-pd") == []  # 15:59 EST: not yet
    await h.bot.db.dispose()  # down across 16:00

    clock.set(datetime(2026, 11, 25, 23, 0, tzinfo=UTC))
    restarted = ConsoleHarness(Database(database_url), policy=alert_policy(), clock=clock)
    out = await tick(restarted)
    assert len(lines_for(out, "#metro-pd")) == 1 and len(lines_for(out, "#metro-pd-internal")) == 1
    assert await tick(restarted) == []
    async with restarted.bot.db.read() as conn:
        assert (await conn.execute(select(alerts.c.state))).scalar_one() == "released"
        actions = [e.action for e in await load_audit(conn, subject="A-1")]
    assert actions == ["alert.created", "alert.scheduled", "alert.released"]
    log = (await restarted.say("@ana #review !alert A-1"))[0]
    assert "Timing: at 2026-11-25 16:00 EST; planned again and released 2026-11-25 18:00 EST" in log
    await restarted.bot.db.dispose()


async def test_two_schedulers_firing_together_send_one_digest(db, database_url) -> None:
    clock = ManualClock(START)
    h = await filed_and_claimed(db, clock)
    await h.say("@ana #review !approve T-1 tlp:green to:transit confirm")
    clock.set(NEXT_DIGEST)
    other = ConsoleHarness(Database(database_url), policy=alert_policy(), clock=clock)
    await asyncio.gather(h.bot.run_due_jobs(), other.bot.run_due_jobs())
    await h.bot.drain()
    await other.bot.drain()
    digests = lines_for(h.printed, "#transit") + lines_for(other.printed, "#transit")
    assert len(digests) == 1
    await other.bot.db.dispose()


async def test_a_digest_withholds_what_the_policy_no_longer_allows(db, tmp_path) -> None:
    clock = ManualClock(START)
    path = tmp_path / "policy.toml"
    path.write_text(ALERT_POLICY)
    h = ConsoleHarness(db, policy=alert_policy(), clock=clock, policy_path=path)
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !approve T-1 tlp:green to:transit confirm")
    # Transit's clearance is lowered to CLEAR before its digest goes out.
    lowered = ALERT_POLICY.replace('max_tlp = "GREEN"', 'max_tlp = "CLEAR"')
    path.write_text(lowered)
    assert "Policy reloaded" in (await h.say("@sam #review !reload"))[0]
    clock.set(NEXT_DIGEST)
    assert lines_for(await tick(h), "#transit") == []
    async with db.read() as conn:
        [sent] = [e for e in await load_audit(conn) if e.action == "digest.sent"]
    assert sent.details["withheld"] == ["A-1@console:#transit"]


def test_latest_fire_walks_across_a_daylight_saving_change() -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("America/New_York")
    # DST ended 2026-11-01 02:00: 07:00 local is 11:00 UTC before and 12:00 UTC after.
    since = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    fire = latest_fire("0 7 * * *", tz, since=since, now=datetime(2026, 11, 1, 12, 30, tzinfo=UTC))
    assert fire == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert (
        latest_fire("0 7 * * *", tz, since=since, now=datetime(2026, 10, 31, 10, 0, tzinfo=UTC))
        is None
    )


async def test_apscheduler_keeps_jobs_in_the_database_and_follows_reloads(db, tmp_path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(ALERT_POLICY)
    h = ConsoleHarness(db, policy=alert_policy(), policy_path=path)
    await h.bot.scheduler.start()
    try:
        assert h.bot.scheduler.job_ids() == [
            "digest:metro-pd",
            "digest:state-police",
            "digest:transit",
            "forget_events",
            "retention",
            "scheduled_alerts",
            "sla",
        ]
        async with db.read() as conn:
            stored = {r[0] for r in await conn.execute(text("SELECT id FROM scheduler_jobs"))}
        assert "digest:transit" in stored  # persistent: a restart finds them
        path.write_text(ALERT_POLICY.replace('id = "transit"', 'id = "rail"'))
        await h.say("@sam #review !reload")
        assert (
            "digest:rail" in h.bot.scheduler.job_ids()
            and "digest:transit" not in h.bot.scheduler.job_ids()
        )
        # Unchanged jobs are left alone on a reload; a changed schedule is taken up.
        path.write_text(
            ALERT_POLICY.replace('id = "transit"', 'id = "rail"\ndigest = "30 6 * * *"')
        )
        await h.say("@sam #review !reload")
        trigger = h.bot.scheduler._scheduler.get_job("digest:rail").trigger  # type: ignore[union-attr]
        assert "hour='6'" in repr(trigger) and "minute='30'" in repr(trigger)
    finally:
        await h.bot.scheduler.stop()
