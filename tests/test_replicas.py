"""Several bot processes on one PostgreSQL database: one leader (an advisory lock) runs
the scheduler; when it dies another takes over within seconds and the digest still goes
out once. Health and metrics on every replica's HTTP port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from bot.leadership import FOLLOWER, LEADER, Leadership
from storage.db import Database
from tests.fakes.slack_web_api import FakeSlackWebAPI
from tests.test_slack_flow import POLICY, fusionbot_run, texts, until

DIGEST_POLICY = POLICY.replace(
    'max_tlp = "GREEN"\nchannels = ["slack:C0TRANSIT"]',
    'max_tlp = "GREEN"\ndelivery = "digest"\ndigest = "* * * * *"\nchannels = ["slack:C0TRANSIT"]',
)


def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite is single-process: replicas need PostgreSQL")


class Duties:
    """What a process does when elected and deposed, recorded."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def elected(self) -> None:
        self.log.append("elected")

    async def deposed(self) -> None:
        self.log.append("deposed")


async def wait_role(leadership: Leadership, role: str, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while leadership.role != role:
            await leadership.changed.wait()


async def test_sqlite_process_leads_at_once(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    duties = Duties()
    leadership = Leadership(db, on_elected=duties.elected, on_deposed=duties.deposed)
    task = asyncio.create_task(leadership.run())
    await wait_role(leadership, LEADER)
    await leadership.stop()
    await task
    assert duties.log == ["elected", "deposed"]
    await db.dispose()


async def test_one_leader_and_takeover_when_it_stops_or_loses_the_database(
    db: Database, database_url: str
) -> None:
    postgres_only(database_url)
    other_db = Database(database_url)
    first, second = Duties(), Duties()
    a = Leadership(db, on_elected=first.elected, on_deposed=first.deposed, poll=0.2)
    b = Leadership(other_db, on_elected=second.elected, on_deposed=second.deposed, poll=0.2)
    tasks = [asyncio.create_task(a.run())]
    await wait_role(a, LEADER)
    tasks.append(asyncio.create_task(b.run()))
    await asyncio.sleep(1.0)
    assert (a.role, b.role) == (LEADER, FOLLOWER)  # the lock is held: one leader only

    # The leader's database session is cut (a failover, a network drop): it steps down
    # by itself, and the other takes over.
    async with db.transaction() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted"
            )
        )
    await wait_role(b, LEADER)
    await wait_role(a, FOLLOWER)
    assert first.log == ["elected", "deposed"]

    # A clean stop releases the lock at once.
    await b.stop()
    await wait_role(a, LEADER, seconds=5)
    await a.stop()
    await asyncio.gather(*tasks)
    assert second.log == ["elected", "deposed"]
    assert first.log == ["elected", "deposed", "elected", "deposed"]
    await other_db.dispose()


async def health(session: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
        answer = json.loads(await response.text())
        answer["http"] = response.status
        return answer


async def test_three_replicas_leader_killed_digest_once(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    postgres_only(database_url)
    env = {"FUSIONBOT_DATABASE_URL": database_url}
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeSlackWebAPI())
        replicas = []
        for n in range(3):
            replicas.append(
                await stack.enter_async_context(
                    fusionbot_run(
                        tmp_path,
                        fake,
                        DIGEST_POLICY,
                        env=env,
                        log_name=f"replica-{n}.log",
                        may_be_killed=True,
                    )
                )
            )
        session = await stack.enter_async_context(aiohttp.ClientSession())
        ports = [int(slack.url.split(":")[2].split("/")[0]) for slack, _, _ in replicas]

        async def roles() -> list[str]:
            return [(await health(session, port))["role"] for port in ports]

        await until_async(lambda: _one_leader(roles), 20)
        first_roles = await roles()
        assert sorted(first_roles) == [FOLLOWER, FOLLOWER, LEADER]
        assert [(await health(session, p))["http"] for p in ports] == [200, 200, 200]

        leader = first_roles.index(LEADER)
        replicas[leader][1].send_signal(signal.SIGKILL)
        await replicas[leader][1].wait()
        survivors = [p for i, p in enumerate(ports) if i != leader]
        started = asyncio.get_running_loop().time()

        async def survivor_roles() -> list[str]:
            return [(await health(session, port))["role"] for port in survivors]

        await until_async(lambda: _one_leader(survivor_roles), 20)
        takeover = asyncio.get_running_loop().time() - started
        assert takeover < 10, f"leadership moved after {takeover:.1f} s"

        # Any replica serves Slack: file on one, triage on the other.
        slack_a = replicas[(leader + 1) % 3][0]
        slack_b = replicas[(leader + 2) % 3][0]
        await slack_a.command(
            "/tip",
            "Drone over the depot | category: other",
            user="UOLLY",
            channel="C0TIPS",
            trigger_id=fake.issue_trigger_id(),
        )
        await until(lambda: fake.messages("C0REVIEW"), 20)
        await slack_b.command(
            "/fusion",
            "claim T-1",
            user="UANA",
            channel="C0REVIEW",
            trigger_id=fake.issue_trigger_id(),
        )
        await until(lambda: "CLAIMED" in texts(fake.messages("C0REVIEW")), 20)
        await slack_a.command(
            "/fusion",
            "approve T-1 tlp:green to:metro-pd,transit confirm",
            user="UANA",
            channel="C0REVIEW",
            trigger_id=fake.issue_trigger_id(),
        )
        # Transit takes a digest every minute: the new leader's scheduler sends it, once.
        await until(lambda: fake.messages("C0METRO"), 20)  # the immediate partner
        digest = await until(lambda: fake.messages("C0TRANSIT"), 90)
        assert "T-1" in texts(digest) or "A-1" in texts(digest)
        await asyncio.sleep(3)
        assert len(fake.messages("C0TRANSIT")) == 1

        async with session.get(f"http://127.0.0.1:{survivors[0]}/metrics") as response:
            exposition = await response.text()
        assert "fusionbot_outbox_depth" in exposition and "fusionbot_leader" in exposition


async def _one_leader(roles: Any) -> bool:
    found = await roles()
    return found.count(LEADER) == 1


async def until_async(check: Any, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        with contextlib.suppress(aiohttp.ClientError, KeyError):
            if await check():
                return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.2)
