"""The `fusionbot` command as an operator or a script uses it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from storage.db import Database
from tests.conftest import reset_postgres
from tests.policies import CONSOLE_POLICY

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """\
@olly #tips !tip Man photographing the substation fence | category: photo | location: 5th & Main
@ana #review !claim T-1
@ana #review !ask T-1 What was he carrying?
@olly @bot !reply T-1 A tripod
this line is not in the console format
@ana #review !approve T-1 to:metro-pd confirm
"""


def fusionbot(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
        check=False,
    )


def setup_center(tmp_path: Path) -> dict[str, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(CONSOLE_POLICY)
    return {
        "FUSIONBOT_POLICY": str(policy),
        "FUSIONBOT_DATA_DIR": str(tmp_path / "data"),
        "FUSIONBOT_DATABASE_URL": "",
    }


def test_console_reads_script_prints_what_the_bot_posts_and_exits_zero(tmp_path: Path) -> None:
    env = setup_center(tmp_path)
    result = fusionbot("console", stdin=SCRIPT, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    starts = [line.split(" ", 1)[0] for line in lines if not line.startswith("    ")]
    assert set(starts) <= {"#review", "#review-night", "#metro-pd", "@olly", "@ana"}
    assert lines[0].startswith("#review T-1 · NEW")
    assert "#review (edited) T-1 · APPROVED · routine · PHOTO" in result.stdout
    assert "@olly Received T-1" in result.stdout
    assert "line 5: expected: @<name> #<channel> <text>" in result.stderr
    # The database survives the session: a second run sees the tip.
    again = fusionbot("console", stdin="@olly @bot !status\n", env=env, cwd=tmp_path)
    assert "T-1 · routine · APPROVED" in again.stdout


def test_console_says_what_it_kept_for_platforms_it_does_not_run(tmp_path: Path) -> None:
    """The example policy routes cards to Slack too; the console run keeps those for a
    later start and says so (on stderr, beside the transcript), in words that agree with
    the count."""
    env = {
        "FUSIONBOT_POLICY": str(ROOT / "policy.example.toml"),
        "FUSIONBOT_DATA_DIR": str(tmp_path / "data"),
        "FUSIONBOT_DATABASE_URL": "",
    }
    one = fusionbot("console", stdin="@olly #tips !tip Van at the depot\n", env=env, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert (
        "1 message kept in the outbox for slack, which this process doesn't run; "
        "it goes out on a later start." in one.stderr
    ), one.stderr
    two = fusionbot("console", stdin="@olly #tips !tip Drone at the pier\n", env=env, cwd=tmp_path)
    assert "2 messages kept in the outbox for slack" in two.stderr, two.stderr
    assert "; they go out on a later start." in two.stderr, two.stderr


def test_audit_verify_passes_then_detects_tampering(tmp_path: Path) -> None:
    env = setup_center(tmp_path)
    fusionbot("console", stdin=SCRIPT, env=env, cwd=tmp_path)
    ok = fusionbot("audit", "verify", env=env, cwd=tmp_path)
    assert ok.returncode == 0 and "audit log intact: 7 rows verified" in ok.stdout

    with sqlite3.connect(tmp_path / "data" / "fusionbot.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'console:mallory' WHERE id = 2")
    broken = fusionbot("audit", "verify", env=env, cwd=tmp_path)
    assert broken.returncode == 1
    assert "row 2 was edited" in broken.stderr
    assert broken.stderr.startswith("AUDIT LOG BROKEN (1 problem):"), broken.stderr


async def sql(db: Database, *statements: str) -> None:
    async with db.transaction() as conn:
        for statement in statements:
            await conn.execute(text(statement))


CUT_THE_LAST_ENTRY_AND_REWIND_THE_HEAD = (
    "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)",
    "UPDATE audit_head SET last_id = (SELECT max(id) FROM audit_log),"
    " last_hash = (SELECT hash FROM audit_log WHERE id = (SELECT max(id) FROM audit_log))",
)


async def test_audit_verify_finds_a_log_cut_off_or_wiped_with_its_head(
    tmp_path: Path, db: Database
) -> None:
    """The chain still links when its head is cut back with it, or both are emptied; the
    tips and alerts on record each lack the entry that filed or created them."""
    env = {**setup_center(tmp_path), "FUSIONBOT_DATABASE_URL": db.url}
    last_tip = "@olly #tips !tip Drone over the pier at night\n"
    filed = fusionbot("console", stdin=SCRIPT + last_tip, env=env, cwd=tmp_path)
    assert filed.returncode == 0, filed.stderr
    ok = fusionbot("audit", "verify", env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == (
        "audit log intact: 8 rows verified; 2 tips and 1 alert checked against it\n"
    )

    await sql(db, *CUT_THE_LAST_ENTRY_AND_REWIND_THE_HEAD)  # T-2's filing
    cut = fusionbot("audit", "verify", env=env, cwd=tmp_path)
    assert cut.returncode == 1
    assert cut.stderr == (
        "AUDIT LOG BROKEN (1 problem):\n"
        "  1 tip has no tip.filed entry (T-2): its entry was deleted from the log\n"
    )

    await sql(db, "DELETE FROM audit_log", "DELETE FROM audit_head")
    wiped = fusionbot("audit", "verify", env=env, cwd=tmp_path)
    assert wiped.returncode == 1
    assert wiped.stderr == (
        "AUDIT LOG BROKEN (2 problems):\n"
        "  2 tips have no tip.filed entry (T-1, T-2): their entries were deleted from the log\n"
        "  1 alert has no alert.created entry (A-1): its entry was deleted from the log\n"
    )


def test_audit_verify_never_creates_a_database(tmp_path: Path) -> None:
    """A mistyped data directory is reported, not left holding a new empty database; the
    policy file plays no part in verifying."""
    env = {
        "FUSIONBOT_POLICY": str(tmp_path / "nope.toml"),
        "FUSIONBOT_DATA_DIR": str(tmp_path / "nonexist"),
        "FUSIONBOT_DATABASE_URL": "",
    }
    missing = fusionbot("audit", "verify", env=env, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == (
        f"no fusionbot database at {tmp_path / 'nonexist' / 'fusionbot.db'};"
        " run `fusionbot db upgrade` to create one\n"
    )
    assert not (tmp_path / "nonexist").exists()

    not_sqlite = tmp_path / "nonexist" / "fusionbot.db"
    not_sqlite.parent.mkdir()
    not_sqlite.write_text("not a database\n")
    unreadable = fusionbot("audit", "verify", env=env, cwd=tmp_path)
    assert unreadable.returncode == 2
    assert "(file is not a database); check FUSIONBOT_DATABASE_URL or FUSIONBOT_DATA_DIR" in (
        unreadable.stderr
    )
    assert "Traceback" not in unreadable.stderr


async def test_audit_verify_says_plainly_why_a_database_cannot_be_verified(
    tmp_path: Path, database_url: str
) -> None:
    env = {**setup_center(tmp_path), "FUSIONBOT_DATABASE_URL": database_url}
    if database_url.startswith("postgresql"):
        await reset_postgres(database_url)
    else:
        # An empty file, as verify itself used to leave where a data directory pointed.
        await asyncio.to_thread(Path(database_url.split("///", 1)[1]).touch)
    empty = fusionbot("audit", "verify", env=env, cwd=tmp_path)
    assert empty.returncode == 2
    assert empty.stderr.startswith(
        "the database is not migrated to the current schema (run `fusionbot db upgrade`):"
        " it has no schema yet"
    ), empty.stderr

    assert fusionbot("console", stdin=SCRIPT, env=env, cwd=tmp_path).returncode == 0
    db = Database(database_url)
    try:
        await sql(db, "DROP TABLE audit_log")
    finally:
        await db.dispose()
    destroyed = fusionbot("audit", "verify", env=env, cwd=tmp_path)
    assert destroyed.returncode == 1
    assert destroyed.stderr == (
        "AUDIT LOG BROKEN (1 problem):\n"
        "  the audit table audit_log is missing: the log has been destroyed\n"
    )


def test_a_data_directory_that_cannot_be_made_is_a_plain_error(tmp_path: Path) -> None:
    env = setup_center(tmp_path)
    in_the_way = tmp_path / "data"
    in_the_way.write_text("a file where the data directory should be\n")
    for command in (["console"], ["run"], ["db", "upgrade"]):
        result = fusionbot(*command, env=env, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr == (
            f"can't make the data directory {in_the_way} (a file is in the way); set"
            " FUSIONBOT_DATA_DIR to a directory fusionbot may create and write\n"
        ), command


def test_policy_check(tmp_path: Path) -> None:
    good = fusionbot("policy", "check", str(ROOT / "policy.example.toml"), cwd=tmp_path)
    assert good.returncode == 0 and "OK — Metro Fusion Center" in good.stdout
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text(CONSOLE_POLICY.replace('sector = "local"', 'sector = "galactic"'))
    bad = fusionbot("policy", "check", str(bad_file), cwd=tmp_path)
    assert bad.returncode == 1
    assert f"{bad_file}:" in bad.stderr and "[[partners]] #1 (id 'metro-pd') sector" in bad.stderr


def test_policy_check_prints_warnings_and_passes(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    text = CONSOLE_POLICY + 'red_recipients = ["console:chief"]\n'
    policy.write_text(text)
    result = fusionbot("policy", "check", str(policy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK — Test Fusion Center" in result.stdout and "; 1 warning above" in result.stdout
    last_line = len(text.splitlines())
    assert f"{policy}:{last_line}: warning: [[partners]] #1 (id 'metro-pd') red_recipients:" in (
        result.stderr
    )


def test_the_bot_starts_on_a_policy_with_warnings_and_logs_them(tmp_path: Path) -> None:
    env = setup_center(tmp_path)
    Path(env["FUSIONBOT_POLICY"]).write_text(
        CONSOLE_POLICY + 'red_recipients = ["console:chief"]\n'
    )
    result = fusionbot("console", stdin="@olly @bot !status\n", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr and "red_recipients: max_tlp is AMBER" in result.stderr


def test_a_broken_policy_stops_the_bot_before_it_starts(tmp_path: Path) -> None:
    env = setup_center(tmp_path)
    Path(env["FUSIONBOT_POLICY"]).write_text("[center]\n")
    result = fusionbot("console", stdin="", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "[center] name: required setting is missing" in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    env = setup_center(tmp_path)
    result = fusionbot("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 0 and "database is up to date" in result.stdout
    with sqlite3.connect(tmp_path / "data" / "fusionbot.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tips", "outbox", "audit_log", "alembic_version"} <= tables
