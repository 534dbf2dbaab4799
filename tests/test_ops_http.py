"""The operators' HTTP endpoints: /healthz says ready only with a reachable database, and
/metrics counts what the bot did."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from bot.app import build
from bot.http_server import serve_http
from bot.leadership import Leadership
from bot.settings import Settings
from storage.db import Database
from tests.harness import ConsoleHarness
from tests.matrix_server.synapse import free_port


async def nothing() -> None:
    return None


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_ready_with_a_database_and_metrics_count_tips(db: Database) -> None:
    h = ConsoleHarness(db)
    leadership = Leadership(db, on_elected=nothing, on_deposed=nothing)
    port = free_port()
    runner = await serve_http(h.bot, leadership, host="127.0.0.1", port=port)
    try:
        status, body = await get(port, "/healthz")
        assert status == 200
        assert json.loads(body) == {"status": "ready", "role": "follower", "database": "ok"}

        _, before = await get(port, "/metrics")
        await h.say("@olly #tips !tip Man photographing the substation | category: photo")
        await h.say("@ana #review !claim T-1")
        await h.say("@ana #review !reject T-1 Known contractor, verified")
        _, after = await get(port, "/metrics")
    finally:
        await runner.cleanup()

    def value(text: str, line_start: str) -> float:
        found = [ln for ln in text.splitlines() if ln.startswith(line_start)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    tips = 'fusionbot_tips_filed_total{platform="console"}'
    assert value(after, tips) == value(before, tips) + 1
    rejected = 'fusionbot_triage_seconds_count{decision="rejected"}'
    assert value(after, rejected) == value(before, rejected) + 1
    sent = 'fusionbot_deliveries_total{outcome="sent",platform="console"}'
    assert value(after, sent) > value(before, sent)
    assert "fusionbot_outbox_depth" in after and "fusionbot_leader 0.0" in after


async def test_not_ready_without_its_database(tmp_path: Path) -> None:
    # Nothing listens on port 1: the database can't be reached.
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/fusionbot")
    bot = build(Settings.from_environ({}), database=unreachable)
    leadership = Leadership(unreachable, on_elected=nothing, on_deposed=nothing)
    port = free_port()
    runner = await serve_http(bot, leadership, host="127.0.0.1", port=port)
    try:
        status, body = await get(port, "/healthz")
        _, exposition = await get(port, "/metrics")  # still served, without the depth
    finally:
        await runner.cleanup()
        await unreachable.dispose()
    assert status == 503
    answer = json.loads(body)
    assert answer["status"] == "not ready" and answer["database"] != "ok"
    assert "fusionbot_tips_filed_total" in exposition
