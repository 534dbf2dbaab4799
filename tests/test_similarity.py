"""'Similar open tips' on review cards: found by the database from the index of open tips'
terms (tip_terms), the same as when the card compared the recent open tips in Python."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import select

from bot.card_render import similar_open_tips
from bot.similarity import TipText, place_term, similar_tips, tip_terms, word_terms
from bot.tips import TipDraft, TipState
from storage import tips_repo
from storage.db import Database, alembic_config
from storage.tables import OPEN_TIP_STATES, tips
from storage.tables import tip_terms as tip_terms_table
from tests.conftest import reset_postgres
from tests.harness import ConsoleHarness, lines_for

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WORDS = (
    "suspicious vehicle photographing male van fence camera substation tripod drone gate "
    "backpack loitering pier"
).split()
PLACES = [None, "Pier 4", "pier 4 ", "5th & Main", "Gate 7"]


def random_draft(rng: random.Random) -> TipDraft:
    summary = " ".join(rng.choices([*WORDS, "the", "a", "near"], k=rng.randint(2, 6)))
    details = " ".join(rng.choices(WORDS, k=rng.randint(1, 4))) if rng.random() < 0.5 else None
    return TipDraft(summary=summary, category="PHOTO", location=rng.choice(PLACES), details=details)


async def file_tips(db: Database, count: int, seed: int) -> None:
    """``count`` tips through the repository, a third of them closed in a later change."""
    rng = random.Random(seed)
    async with db.transaction() as conn:
        for n in range(count):
            now = NOW + timedelta(minutes=n)
            tip, _ = await tips_repo.insert_tip(
                conn, random_draft(rng), officer="console:olly", channel="console:#tips", now=now
            )
            if rng.random() < 0.33:
                tip.state = rng.choice([TipState.REJECTED, TipState.APPROVED, TipState.DUPLICATE])
                await tips_repo.save_tip(conn, tip, now=now)
            elif rng.random() < 0.3:
                tip.state = TipState.CLAIMED
                await tips_repo.save_tip(conn, tip, now=now)


async def compared_in_python(conn, tip, window: int) -> list[tuple[str, str]]:
    """What the card showed when it loaded the ``window`` most recent open tips."""
    rows = await conn.execute(
        select(tips.c.id, tips.c.summary, tips.c.details, tips.c.location)
        .where(tips.c.state.in_(OPEN_TIP_STATES), tips.c.id != tip.id)
        .order_by(tips.c.id.desc())
        .limit(window)
    )
    candidates = [tips_repo.TipText._make(r) for r in rows]
    return [(s.tip.ref, s.why) for s in similar_tips(tip, candidates)]


async def candidates_for(conn, tip, **options: int) -> list[TipText]:
    """What the database ranks as like ``tip``, by its own words and place."""
    return await tips_repo.similar_open_tips(
        conn,
        word_terms(tip.summary, tip.details),
        place_term(tip.location),
        exclude=tip.id,
        **options,
    )


async def test_cards_show_the_same_similar_tips_as_comparing_every_candidate(db) -> None:
    await file_tips(db, 120, seed=3)
    reasons: list[str] = []
    async with db.read() as conn:
        for tip_id in range(1, 121):
            tip = await tips_repo.get_tip(conn, tip_id)
            assert tip is not None
            found = [(s.tip.ref, s.why) for s in await similar_open_tips(conn, tip)]
            assert found == await compared_in_python(conn, tip, window=500), tip
            reasons += [why for _, why in found]
    # The examples do have similar tips, for every kind of reason.
    assert len(reasons) > 100
    assert "same place" in reasons
    assert any(why.startswith("shares ") for why in reasons)
    assert any(why.startswith("same place; shares ") for why in reasons)


async def test_only_the_most_recent_open_tips_are_compared(db) -> None:
    await file_tips(db, 60, seed=5)
    async with db.read() as conn:
        for tip_id in range(1, 61, 3):
            tip = await tips_repo.get_tip(conn, tip_id)
            assert tip is not None
            candidates = await candidates_for(conn, tip, window=10)
            found = [(s.tip.ref, s.why) for s in similar_tips(tip, candidates)]
            assert found == await compared_in_python(conn, tip, window=10)


async def test_the_ranking_weighs_place_and_shared_words_as_the_card_explains(db) -> None:
    # The database sums one weight per matching term (the place heavier than all the words
    # together); each case here is one way that sum could be misread.
    drafts = [
        ("Drone over the pier", "Pier 4"),  # T-1: same place, one shared word: 3
        ("Drone filming the substation fence", None),  # T-2: three shared words: 3
        ("Drone at the gate", "Pier 4"),  # T-3: same place, two shared words: 3 + 2
        ("Tripod near a fence", "pier 4 "),  # T-4: same place, nothing shared: 3
        ("Substation fence photographed", None),  # T-5: two shared words: 2
        ("Drone spotted downtown", None),  # T-6: one shared word only: not similar
    ]
    async with db.transaction() as conn:
        for n, (summary, location) in enumerate(drafts):
            await tips_repo.insert_tip(
                conn,
                TipDraft(summary=summary, category="PHOTO", location=location),
                officer="console:olly",
                channel="console:#tips",
                now=NOW + timedelta(minutes=n),
            )
        tip, _ = await tips_repo.insert_tip(
            conn,
            TipDraft(summary="Drone gate substation fence", category="PHOTO", location="Pier 4"),
            officer="console:otto",
            channel="console:#tips",
            now=NOW + timedelta(hours=1),
        )
    async with db.read() as conn:
        shown = [(s.tip.ref, s.why) for s in await similar_open_tips(conn, tip)]
        assert shown == await compared_in_python(conn, tip, window=500)
        ranked = await candidates_for(conn, tip, limit=10)
        # Best first, the newest first among equals; T-6 shares one word and no place.
        assert [c.ref for c in ranked] == ["T-3", "T-4", "T-2", "T-1", "T-5"]
        # A place alone, or a single word with the place, is enough to be found.
        place_only = await tips_repo.similar_open_tips(
            conn, frozenset(), place_term("Pier 4"), exclude=tip.id, limit=10
        )
        assert [c.ref for c in place_only] == ["T-4", "T-3", "T-1"]
        one_word = await tips_repo.similar_open_tips(
            conn, word_terms("drone", None), place_term("Pier 4"), exclude=tip.id, limit=10
        )
        assert [c.ref for c in one_word] == ["T-4", "T-3", "T-1"]


async def test_a_closed_tip_leaves_the_index_and_other_cards(db) -> None:
    h = ConsoleHarness(db)
    await h.say("@olly #tips !tip Drone over the substation fence | location: Pier 4")
    out = await h.say("@otto #tips !tip Drone filming the substation | location: Pier 9")
    assert "Similar open tips: T-1 (shares drone, substation)" in lines_for(out, "#review")[0]

    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !reject T-1 Utility survey flight, confirmed")
    async with db.read() as conn:
        indexed = (await conn.execute(select(tip_terms_table.c.tip_id).distinct())).scalars()
        assert sorted(indexed) == [2]

    out = await h.say("@otto #tips !tip Another drone at the substation | location: Pier 4")
    card = lines_for(out, "#review")[0]
    assert "T-2 (shares drone, substation)" in card and "T-1" not in card.split("Similar")[1]


async def test_migration_indexes_the_tips_open_at_upgrade(database_url: str) -> None:
    if database_url.startswith("postgresql"):
        await reset_postgres(database_url)
    db = Database(database_url)
    try:
        async with db.transaction() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0005"))
        async with db.transaction() as conn:
            for n, (state, summary, location) in enumerate(
                [
                    ("new", "Van photographing the pier gate", "Pier 4"),
                    ("needs_info", "Drone over the substation", None),
                    ("rejected", "Licensed surveyor with a tripod", "5th & Main"),
                ],
                start=1,
            ):
                await conn.execute(
                    tips.insert().values(
                        id=n,
                        summary=summary,
                        category="PHOTO",
                        urgency="routine",
                        location=location,
                        state=state,
                        officer="console:olly",
                        intake_channel="console:#tips",
                        filed_at=NOW,
                        updated_at=NOW,
                        version=1,
                    )
                )
        await db.upgrade()
        async with db.read() as conn:
            rows = (await conn.execute(select(tip_terms_table))).all()
        assert {(r.tip_id, r.term) for r in rows} == {
            (1, term) for term in tip_terms("Van photographing the pier gate", None, "Pier 4")
        } | {(2, term) for term in tip_terms("Drone over the substation", None, None)}
        assert {"van", "pier", "@pier 4", "drone"} <= {r.term for r in rows}
    finally:
        await db.dispose()
