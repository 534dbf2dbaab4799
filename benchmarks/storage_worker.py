"""The storage benchmark's child processes (run by benchmarks/storage.py):

    python -m benchmarks.storage_worker seed URL N      # migrate, bulk-insert N tips
    python -m benchmarks.storage_worker measure URL N   # the bot on that database

``seed`` writes N tips straight into the real tables (storage/tables.py), with what a
center accumulates around them: notes on one tip in five, each tip's card and receipt in
the outbox (sent), and a valid hash-chained audit row per tip. About 5% of the tips are
still open, most are closed, and rejected ones older than the retention period purged;
the open ones' terms are in the index of open tips (tip_terms), as the bot writes them.

``measure`` builds the bot the way `fusionbot run` does (bot.app.build, console sender) in
a fresh process, files and triages tips through commands, asks for !status and renders
cards, and prints one JSON object: per-operation timings and the process's RSS."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from benchmarks.common import rss_mib, summary_ms
from bot.audit import GENESIS, entry_hash, normalize_details
from bot.cards import card_key
from bot.categories import CATEGORIES
from bot.messages import Message
from bot.similarity import tip_terms
from bot.tips import TipState, Urgency
from storage.db import Database
from storage.tables import OPEN_TIP_STATES, audit_head, audit_log, outbox, tip_notes, tips
from storage.tables import tip_terms as tip_terms_table

ROUNDS = 40
OFFICERS = 2000
OFFICER = "console:off0001"  # files the measured tips; has its share of seeded ones
ANALYST = "console:ana"
NOW = datetime.now(UTC)
# Seeded tips read like tips: words drawn with Zipf's law from a domain vocabulary in
# rough order of how often they occur in suspicious-activity reports, so the common ones
# ("suspicious", "vehicle", "photographing") are in a large share of the tips, as they are
# in a center's records, and the rare ones in a few; stop words between them, a plate or a
# number now and then, and details on most tips. The measured tips' words are among them
# at a realistic rank ("photographing" common, "fence" fairly, "substation" and "tripod"
# less so), so "similar open tips" has about as much to compare as it would in a center.
VOCABULARY = (
    "suspicious vehicle photographing male parked white black van entrance security "
    "fence camera building questions area car walking driving female asked observed "
    "gate video recording loitering truck backpack employee behavior approached left "
    "minutes phone taking pictures several times night parking lot silver sedan "
    "individual appeared nervous when perimeter access door guard station bag front "
    "morning tower facility infrastructure blue red gray pickup plates license drone "
    "unattended package rear street hours staff notes sketching measuring pacing "
    "railroad tracks substation power plant water treatment bridge tunnel stadium mall "
    "school hospital church synagogue mosque airport terminal hangar port pier dock "
    "container warehouse depot pipeline valve transformer tripod binoculars notebook "
    "map diagram schedule shift change delivery uniform badge credential ladder wire "
    "cutters bolt fuel chemical powder smell smoke alarm fertilizer propane cylinders "
    "rental rented receipt cash purchased bulk quantity inquired inquiries capacity "
    "crowd event concert parade weekend evening overnight circled twice drove slowly "
    "stopped turned fled ran hood mask gloves hoodie jacket cap beard tall short "
    "thin heavy young older pair group three companions passenger driver motorcycle "
    "bicycle scooter boat kayak trailer dumpster alley roof ladder antenna cellular "
    "router cable fiber cabinet control room server badge reader keypad lock broken "
    "cut tampered forced damaged graffiti symbol flyer sticker message threat post "
    "online social media account manifesto weapon rifle handgun ammunition holster "
    "vest tactical range practice flight lessons simulator laser pointer"
).split()
# Zipf's law (s = 1): the k-th word is drawn with weight 1/k.
WORD_WEIGHTS = list(accumulate(1 / rank for rank in range(1, len(VOCABULARY) + 1)))
# Places too: a few sites come up again and again (the busiest in about 1.5% of tips),
# most once or twice.
SITES = 3000
SITE_WEIGHTS = list(accumulate(1 / (rank + 10) for rank in range(SITES)))
FILLERS = "the a near at by on with and of in from".split()
CODES = list(CATEGORIES)


def sync_url(url: str) -> str:
    """The same database through a synchronous driver, for bulk inserts."""
    u = make_url(url)
    driver = {"sqlite+aiosqlite": "sqlite", "postgresql+asyncpg": "postgresql+psycopg"}
    return u.set(drivername=driver.get(u.drivername, u.drivername)).render_as_string(
        hide_password=False
    )


def _state(rng: random.Random) -> TipState:
    roll = rng.random()
    if roll < 0.02:
        return TipState.NEW
    if roll < 0.04:
        return TipState.CLAIMED
    if roll < 0.05:
        return TipState.NEEDS_INFO
    if roll < 0.40:
        return TipState.APPROVED
    if roll < 0.85:
        return TipState.REJECTED
    return TipState.DUPLICATE


def _text(rng: random.Random, count: int) -> str:
    words = rng.choices(VOCABULARY, cum_weights=WORD_WEIGHTS, k=count)
    for at in sorted(rng.sample(range(count), k=count // 3), reverse=True):
        words.insert(at, rng.choice(FILLERS))
    if rng.random() < 0.3:  # a plate, a time, a count: words almost no other tip has
        words.append(f"{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.randint(1000, 99999)}")
    return " ".join(words).capitalize()


def _place(rng: random.Random) -> str:
    site = rng.choices(range(SITES), cum_weights=SITE_WEIGHTS)[0]
    return f"gate {site}" if rng.random() < 0.5 else f"{site} Main St"


def seed(url: str, count: int) -> dict[str, Any]:
    started = time.perf_counter()
    asyncio.run(_migrate(url))
    migrated = time.perf_counter()
    rng = random.Random(7)
    card = Message(header="T-0 · APPROVED", text="seeded card").model_dump(mode="json")
    receipt = Message(text="Received T-0 (seeded).").model_dump(mode="json")
    engine = create_engine(sync_url(url))
    last_hash = GENESIS
    note_id = 0
    opened = 0
    chunk = 5000
    with engine.begin() as conn:
        for first in range(1, count + 1, chunk):
            tip_rows, note_rows, outbox_rows, audit_rows = [], [], [], []
            term_rows: list[dict[str, Any]] = []
            for tip_id in range(first, min(count, first + chunk - 1) + 1):
                filed = NOW - timedelta(minutes=(count - tip_id) * 15 + rng.randint(0, 10))
                state = _state(rng)
                closed = state in (TipState.APPROVED, TipState.REJECTED, TipState.DUPLICATE)
                decided = filed + timedelta(hours=rng.randint(1, 72)) if closed else None
                purged = (
                    decided + timedelta(days=30)
                    if state is TipState.REJECTED and decided and decided < NOW - timedelta(days=30)
                    else None
                )
                summary = _text(rng, rng.randint(6, 14))
                details = _text(rng, rng.randint(8, 30)) if rng.random() < 0.8 else None
                officer = f"console:off{rng.randint(1, OFFICERS):04d}"
                tip_rows.append(
                    {
                        "id": tip_id,
                        "summary": "" if purged else summary,
                        "category": rng.choice(CODES),
                        "urgency": rng.choice(list(Urgency)).value,
                        "location": None if purged else _place(rng),
                        "region": rng.choice(["north", "south", "downtown"]),
                        "when_text": None,
                        "details": None if purged else details,
                        "state": state.value,
                        "officer": officer,
                        "intake_channel": "console:#tips",
                        "filed_at": filed,
                        "claimed_by": ANALYST if state is not TipState.NEW else None,
                        "decided_by": ANALYST if closed else None,
                        "decided_at": decided,
                        "reason": "seeded" if state is TipState.REJECTED and not purged else None,
                        "duplicate_of": max(1, tip_id - 1) if state is TipState.DUPLICATE else None,
                        "purged_at": purged,
                        "updated_at": purged or decided or filed,
                        "version": 3,
                        "source_key": None,
                    }
                )
                if not closed:
                    opened += 1
                    # The index of open tips' terms, as the bot writes it when filing one.
                    location = tip_rows[-1]["location"]
                    term_rows += [
                        {"term": term, "tip_id": tip_id}
                        for term in tip_terms(summary, details, location)
                    ]
                if not purged and rng.random() < 0.2:
                    for kind, who, words in (
                        ("ask", ANALYST, "What else?"),
                        ("answer", officer, "A van."),
                    ):
                        note_id += 1
                        note_rows.append(
                            {
                                "id": note_id,
                                "tip_id": tip_id,
                                "kind": kind,
                                "actor": who,
                                "text": words,
                                "at": filed + timedelta(minutes=5),
                            }
                        )
                for n, (key, target, payload) in enumerate(
                    (
                        (f"{card_key(tip_id)}@console:#review", "console:#review", card),
                        (f"receipt:{tip_id}", "console:#tips", receipt),
                    )
                ):
                    outbox_rows.append(
                        {
                            "id": tip_id * 2 - 1 + n,
                            "key": key,
                            "op": "post",
                            "target": target,
                            "ephemeral_to": officer if n else None,
                            "message_key": card_key(tip_id) if n == 0 else None,
                            "payload": payload,
                            "state": "sent",
                            "attempts": 0,
                            "next_attempt_at": filed,
                            "lease_until": None,
                            "last_error": None,
                            "platform_ref": f"console-{tip_id * 2 + n}",
                            "created_at": filed,
                            "sent_at": filed,
                        }
                    )
                details = normalize_details({"category": "PHOTO", "urgency": "routine"})
                digest = entry_hash(
                    tip_id, filed, officer, "tip.filed", f"T-{tip_id}", details, last_hash
                )
                audit_rows.append(
                    {
                        "id": tip_id,
                        "at": filed,
                        "actor": officer,
                        "action": "tip.filed",
                        "subject": f"T-{tip_id}",
                        "details": details,
                        "prev_hash": last_hash,
                        "hash": digest,
                    }
                )
                last_hash = digest
            conn.execute(tips.insert(), tip_rows)
            if term_rows:
                conn.execute(tip_terms_table.insert(), term_rows)
            if note_rows:
                conn.execute(tip_notes.insert(), note_rows)
            conn.execute(outbox.insert(), outbox_rows)
            conn.execute(audit_log.insert(), audit_rows)
        if count:
            conn.execute(audit_head.insert().values(id=1, last_id=count, last_hash=last_hash))
        if conn.dialect.name == "postgresql":
            for table in ("tips", "tip_notes", "outbox"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
                    )
                )
        else:
            # Kept on SQLite although the bot itself never analyzes: statistics gathered
            # after a bulk load (every outbox row sent) are the harder case for the plans,
            # the one that turned the outbox claims into full scans. The plans of the
            # statements measured here are the same without statistics (EXPLAIN QUERY PLAN).
            conn.execute(text("ANALYZE"))
    if engine.dialect.name == "postgresql":
        # What autovacuum (on by default) has done to a center's database long before it
        # holds 100,000 tips: vacuumed (the visibility map lets index-only scans skip the
        # table) and analyzed. The test server runs with autovacuum off, so the seeding
        # does it; VACUUM can't run inside a transaction.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "migrate_s": round(migrated - started, 2),
        "tips": count,
        "open": opened,
    }


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await db.upgrade()
    finally:
        await db.dispose()


async def measure(url: str, count: int) -> dict[str, Any]:
    from adapters.console.sender import ConsoleSender
    from bot.app import build
    from bot.card_render import render_card
    from bot.settings import Settings
    from commands.context import Command
    from storage import tips_repo
    from tests.policies import console_policy

    printed: list[str] = []
    db = Database(url)
    bot = build(
        Settings.from_environ({}),
        policy=console_policy(),
        senders={"console": ConsoleSender(printed.append)},
        database=db,
    )
    timings: dict[str, list[float]] = {}

    async def timed(op: str, actor: str, channel: str, line: str, *, dm: bool = False) -> None:
        began = time.perf_counter()
        await bot.handle(Command(actor=actor, channel=channel, text=line, is_dm=dm))
        timings.setdefault(op, []).append(time.perf_counter() - began)
        await bot.drain(10.0)  # deliveries happen, untimed, so nothing piles up

    async def render(op: str, tip_id: int) -> None:
        async with db.read() as conn:
            tip = await tips_repo.get_tip(conn, tip_id)
            assert tip is not None
            began = time.perf_counter()
            await render_card(bot.core, conn, tip)
            timings.setdefault(op, []).append(time.perf_counter() - began)

    rng = random.Random(11)
    open_seeded: list[int] = []
    if count:
        async with db.read() as conn:
            open_seeded = list(
                (
                    await conn.execute(
                        select(tips.c.id)
                        .where(tips.c.state.in_(OPEN_TIP_STATES))
                        .order_by(tips.c.id.desc())
                        .limit(200)
                    )
                ).scalars()
            )
    try:
        # Warm up: one tip through its whole life, unmeasured.
        await bot.handle(Command(OFFICER, "console:#tips", "!tip warm up | category: photo"))
        await bot.drain(10.0)
        for i in range(ROUNDS):
            before = len(printed)
            await timed(
                "file",
                OFFICER,
                "console:#tips",
                f"!tip Person photographing the substation fence {i} with a tripod "
                f"| category: photo | location: gate {i}",
            )
            found = re.search(r"Received T-(\d+)", "\n".join(printed[before:]))
            assert found, printed[before:]
            ref = f"T-{found.group(1)}"
            await timed("claim", ANALYST, "console:#review", f"!claim {ref}")
            await timed("ask", ANALYST, "console:#review", f"!ask {ref} What was he carrying?")
            await timed("reply", OFFICER, "console:@bot", f"!reply {ref} A tripod", dm=True)
            if i % 2:
                await timed("reject", ANALYST, "console:#review", f"!reject {ref} Not enough")
            else:
                await timed(
                    "approve",
                    ANALYST,
                    "console:#review",
                    f"!approve {ref} tlp:green to:metro-pd confirm",
                )
            await timed("status (analyst queue)", ANALYST, "console:#review", "!status")
            await timed("status (officer's tips)", OFFICER, "console:#tips", "!status")
            await timed("status T-n", ANALYST, "console:#review", f"!status {ref}")
            await render("card render (new tip)", int(found.group(1)))
            if open_seeded:
                await render("card render (seeded open tip)", rng.choice(open_seeded))
        memory = rss_mib(os.getpid())
    finally:
        await bot.stop()
    return {
        "ops": {op: summary_ms(values) for op, values in timings.items()},
        "seconds": timings,
        **memory,
    }


def main(argv: list[str]) -> int:
    mode, url, count = argv[0], argv[1], int(argv[2])
    result = seed(url, count) if mode == "seed" else asyncio.run(measure(url, count))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
