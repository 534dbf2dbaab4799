"""``fusionbot``: run the bot, try it on the console, and administer it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

import typer

from adapters.matrix.session import MatrixLoginError
from bot.app import keep_out_of_full_collections, slack_app, start_matrix
from bot.http_server import serve_http
from bot.leadership import Leadership
from bot.policy_loader import PolicyError, check_policy_file
from bot.settings import Settings
from bot.wording import counted

if TYPE_CHECKING:
    from adapters.matrix.runtime import MatrixRuntime
    from bot.app import FusionBot

Cleanup = Callable[[], Awaitable[object]]
log = logging.getLogger(__name__)

app = typer.Typer(
    help="fusionbot: tips from the street to cleared partners.", no_args_is_help=False
)
db_app = typer.Typer(help="Database administration.")
policy_app = typer.Typer(help="Policy file tools.")
audit_app = typer.Typer(help="Audit log tools.")
app.add_typer(db_app, name="db")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")


def _settings() -> Settings:
    settings = Settings.from_environ(os.environ, env_file=".env")
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Migration, scheduler and Matrix client chatter is noise in the bot's log.
    for chatty in ("alembic", "apscheduler", "nio"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return settings


def _check_policy_or_exit(settings: Settings) -> None:
    try:
        checked = check_policy_file(settings.policy)
    except PolicyError as exc:
        typer.echo("\n".join(exc.problems), err=True)
        raise typer.Exit(2) from None
    for warning in checked.warnings:
        log.warning("%s", warning)


def _check_data_dir_or_exit(settings: Settings) -> None:
    """Make the SQLite file's directory now, so that one that can't be made is a plain
    message rather than a traceback from deep inside the start-up."""
    from storage.db import sqlite_path

    path = sqlite_path(settings.effective_database_url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # mkdir says "File exists" of a file in the way: the point is it isn't a directory.
        why = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
        typer.echo(
            f"can't make the data directory {path.parent.absolute()} ({why}); set"
            " FUSIONBOT_DATA_DIR to a directory fusionbot may create and write",
            err=True,
        )
        raise typer.Exit(2) from None


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context) -> None:
    """With no command: run."""
    if ctx.invoked_subcommand is None:
        run(with_console=False)


@app.command()
def run(
    with_console: bool = typer.Option(
        False,
        "--console",
        help="Also run the console adapter on this terminal (or on lines piped in), in the "
        "same process as Slack.",
    ),
) -> None:
    """Start the bot on every configured platform (the console when none is)."""
    settings = _settings()
    _check_policy_or_exit(settings)
    _check_data_dir_or_exit(settings)
    slack = settings.slack_bot_token is not None
    matrix = settings.matrix_homeserver is not None
    if not slack and not matrix:
        asyncio.run(run_console(settings, sys.stdin, sys.stdout, sys.stderr))
        return
    if slack and settings.slack_signing_secret is None:
        typer.echo("Slack needs SLACK_SIGNING_SECRET as well as SLACK_BOT_TOKEN.", err=True)
        raise typer.Exit(2)
    if matrix and settings.matrix_user_id is None:
        typer.echo("Matrix needs MATRIX_USER_ID as well as MATRIX_HOMESERVER.", err=True)
        raise typer.Exit(2)
    if matrix and settings.matrix_password is None and settings.matrix_access_token is None:
        typer.echo("Matrix needs MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN.", err=True)
        raise typer.Exit(2)
    try:
        asyncio.run(serve_platforms(settings, with_console=with_console))
    except MatrixLoginError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


async def serve_platforms(settings: Settings, *, with_console: bool = False) -> None:
    """Run the configured platforms until SIGINT or SIGTERM; with the console too, one
    process bridges them (a tip typed on the console is triaged in Slack, and so on)."""
    import signal

    from bot.app import attach_installations, build, platform_senders, slack_installations
    from storage.db import Database

    db = Database(settings.effective_database_url)
    # Partner workspaces that installed the app (OAuth), when a client id is configured.
    installations = slack_installations(settings, db)
    senders = platform_senders(settings, installations)
    if with_console:
        from adapters.console.sender import ConsoleSender

        senders["console"] = ConsoleSender(_print)
    bot = build(settings, senders=senders, database=db)
    # The scheduler and the Matrix sync run on the leader only (bot/leadership.py).
    await bot.start(schedule=False)
    if installations is not None:
        await installations.create_tables()
        attach_installations(bot, installations)
    stop = asyncio.Event()
    fatal: list[BaseException] = []

    def give_up(exc: BaseException) -> None:
        fatal.append(exc)
        stop.set()

    leadership = _leadership(bot, give_up)
    leading = asyncio.create_task(leadership.run(), name="leadership")

    async def stop_leading() -> None:
        await leadership.stop()
        await leading

    # After the outbox worker has stopped: a deposed leader's Matrix client closes last.
    bot.after_stop.append(stop_leading)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    cleanups: list[Cleanup] = []
    try:
        slack = await slack_app(bot) if settings.slack_bot_token is not None else None
        if slack is not None and settings.slack_app_token is not None:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            socket = AsyncSocketModeHandler(slack, settings.slack_app_token.get_secret_value())
            await socket.connect_async()
            cleanups.append(socket.close_async)
            log.info("slack: Socket Mode connected")
            slack = None  # no HTTP endpoint for Slack then
        port = settings.http_port or 3000
        runner = await serve_http(
            bot,
            leadership,
            host=settings.http_host,
            port=port,
            slack=slack,
            installations=installations,
        )
        cleanups.append(runner.cleanup)
        log.info(
            "http: /healthz and /metrics%s on http://%s:%d",
            " and /slack/events" if slack is not None else "",
            settings.http_host,
            port,
        )
        if with_console:
            from adapters.console.adapter import ConsoleAdapter

            adapter = ConsoleAdapter(
                bot.handle,
                bot.drain,
                stdin=sys.stdin,
                stderr=sys.stderr,
                interactive=sys.stdin.isatty(),
                welcome=_welcome(bot.core.policy),
            )
            # At the end of the console's input the other platforms go on serving.
            console_task = asyncio.create_task(adapter.run())
            cleanups.append(lambda: _finish(console_task))
        keep_out_of_full_collections()
        await stop.wait()
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()
        await bot.stop()
    if fatal:
        raise fatal[0]


def _leadership(bot: FusionBot, give_up: Callable[[BaseException], None]) -> Leadership:
    """The leader runs the scheduler and, when configured, the Matrix sync loop."""
    matrix: list[MatrixRuntime] = []

    async def elected() -> None:
        await bot.scheduler.start()
        keep_out_of_full_collections()
        if bot.settings.matrix_homeserver is not None:
            try:
                matrix.append(await start_matrix(bot))
            except MatrixLoginError as exc:
                give_up(exc)  # wrong credentials: a person must fix the settings
                raise

    async def deposed() -> None:
        await bot.scheduler.stop()
        bot.worker.remove_sender("matrix")
        while matrix:
            await matrix.pop().close()

    return Leadership(bot.db, on_elected=elected, on_deposed=deposed)


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _finish(task: asyncio.Task[object]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@app.command()
def console() -> None:
    """Speak as anyone in the policy, in any channel. Reads `@name #channel text` lines
    when stdin is not a terminal, prints what the bot posts, and exits at end of input."""
    settings = _settings()
    _check_policy_or_exit(settings)
    _check_data_dir_or_exit(settings)
    asyncio.run(run_console(settings, sys.stdin, sys.stdout, sys.stderr))


async def run_console(
    settings: Settings, stdin: TextIO, stdout: TextIO, stderr: TextIO
) -> dict[str, int]:
    from adapters.console.adapter import ConsoleAdapter
    from adapters.console.sender import ConsoleSender
    from bot.app import build

    def write(text: str) -> None:
        stdout.write(text + "\n")
        stdout.flush()

    interactive = stdin.isatty()
    log_file = _log_to_file(settings.data_dir) if interactive else None
    bot = build(settings, senders={"console": ConsoleSender(write)})
    # A script reads in order and must not be overtaken by timed jobs; a person at the
    # terminal gets digests, scheduled alerts and reminders as they fall due.
    await bot.start(deliver=interactive, schedule=interactive)
    try:
        adapter = ConsoleAdapter(
            bot.handle,
            bot.drain,
            stdin=stdin,
            stderr=stderr,
            interactive=interactive,
            welcome=_welcome(bot.core.policy, log_file) if interactive else "",
        )
        return await adapter.run()
    finally:
        await bot.stop()


def _log_to_file(data_dir: Path) -> Path:
    """A person at the console reads the bot's messages on this terminal: its log (the
    scheduler's runs, in UTC) goes to a file instead of between them and the prompt."""
    path = data_dir / "fusionbot.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    return path


def _welcome(policy, log_file: Path | None = None) -> str:
    from bot.addresses import split_address

    def names(addresses: list[str]) -> str:
        found = [split_address(a)[1] for a in addresses if a.startswith("console:")]
        return ", ".join(found) or "(none)"

    partner_channels = [c for p in policy.partners for c in (*p.channels, *p.internal_channels)]
    return "\n".join(
        [
            f"fusionbot — {policy.center.name} (console)",
            f"Analysts: {names(policy.roles.analysts)}   "
            f"Supervisors: {names(policy.roles.supervisors)}   Admins: {names(policy.roles.admins)}   Officers: anyone in an intake channel",
            f"Intake: {names([c for i in policy.intake for c in i.channels])}   "
            f"Review: {names(policy.review_channels)}   Partners: {names(partner_channels)}",
            "Speak as someone in a channel: @olly #tips !tip Man photographing the substation "
            "| category: photo | location: 5th & Main",
            "Then: @ana #review !claim T-1    Later lines without @… keep the same speaker.",
            "!help shows what each person may do. Ctrl-D quits."
            + (f" The bot's log: {log_file}" if log_file else ""),
        ]
    )


@app.command()
def demo() -> None:
    """Play a scripted tour on a throw-away database and print the transcript."""
    from bot.demo import play

    _settings()

    def write(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    asyncio.run(play(write))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest version."""
    from storage.db import Database

    settings = _settings()
    _check_data_dir_or_exit(settings)

    async def upgrade() -> None:
        database = Database(settings.effective_database_url)
        await database.upgrade()
        await database.dispose()

    asyncio.run(upgrade())
    typer.echo(f"database is up to date: {_safe_url(settings.effective_database_url)}")


@policy_app.command("check")
def policy_check(file: Path) -> None:
    """Validate a policy file; exits 1 and names file, line, table and field on errors
    (warnings, for settings that can never take effect, leave the exit status 0)."""
    try:
        policy, warnings = check_policy_file(file)
    except PolicyError as exc:
        typer.echo("\n".join(exc.problems), err=True)
        raise typer.Exit(1) from None
    if warnings:
        typer.echo("\n".join(warnings), err=True)
    typer.echo(
        f"{file}: OK — {policy.center.name}: {counted(len(policy.review), 'review route')}, "
        f"{counted(len(policy.partners), 'partner')}, {counted(len(policy.intake), 'intake group')}"
        + (f"; {counted(len(warnings), 'warning')} above" if warnings else "")
    )


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain, and that every tip and alert has its entry in it;
    exits 1 naming every broken row and missing entry. Never creates or migrates a database."""
    from bot.audit_verify import BROKEN, CannotVerify, verify_database

    settings = _settings()
    try:
        report = asyncio.run(verify_database(settings.effective_database_url))
    except CannotVerify as exc:
        if exc.exit_code == BROKEN:
            _report_broken([exc.reason])
        typer.echo(exc.reason, err=True)
        raise typer.Exit(exc.exit_code) from None
    if report.ok:
        records = " and ".join(counted(n, noun) for noun, n in report.records.items())
        typer.echo(
            f"audit log intact: {counted(report.checked, 'row')} verified;"
            f" {records} checked against it"
        )
        return
    _report_broken(report.problems)


def _report_broken(problems: list[str]) -> NoReturn:
    typer.echo(f"AUDIT LOG BROKEN ({counted(len(problems), 'problem')}):", err=True)
    for problem in problems:
        typer.echo(f"  {problem}", err=True)
    raise typer.Exit(1)


def _safe_url(url: str) -> str:
    """Never print a password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
