"""The Slack adapter's bolt app: slash commands, buttons and modals become neutral Commands.

Listeners only validate, hand the command to the core (which commits it) and then ack,
so a request Slack saw acknowledged is never lost; every answer goes through the outbox.
The only Web API calls made from a listener open a form (``views.open``, then
``views.update`` to fill it), because a trigger_id lives only 3 seconds. A listener never
raises: with bolt 1.30 an exception right after ``ack()`` makes bolt discard the ack (see
../shared/notes/slack.md).

The core checks who may do what on every command, typed or clicked; a button's value is
only the text command it stands for and is trusted no further.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.listener_matcher import builtins as builtin_matchers
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import modals
from adapters.slack.identity import BotIdentity
from commands.context import Command

log = logging.getLogger(__name__)

Handle = Callable[[Command], Awaitable[bool]]
# Records an Events API event_id and says whether it was recorded before (a retry).
SeenBefore = Callable[[str], Awaitable[bool]]
JSONDict = dict[str, Any]

ACTION_PREFIX = "fusion:"
_ACTION_PATTERN = re.compile("^" + re.escape(ACTION_PREFIX))


def create_slack_app(
    handle: Handle,
    *,
    bot_token: str,
    signing_secret: str,
    api_url: str | None,
    home_team: str | None = None,
    seen_before: SeenBefore | None = None,
    identity: BotIdentity | None = None,
) -> AsyncApp:
    """A bolt AsyncApp wired to ``handle`` (``FusionBot.handle`` in production).

    With ``home_team``, requests from another workspace (the app installed there) name
    its channels and people ``slack:<team>/<id>``; without, every id is taken as is.
    ``seen_before`` deduplicates Events API retries (the composition root passes one that
    records event ids in the database); without it every delivery is handled.
    ``identity`` (from auth.test at start) spares bolt its own auth.test on the first
    request, and names the home workspace."""
    client = (
        AsyncWebClient(token=bot_token, base_url=api_url)
        if api_url
        else AsyncWebClient(token=bot_token)
    )
    # process_before_response: bolt returns a request's response when its listener has
    # returned, instead of running the listener in the background and polling every 10 ms
    # for its ack (which rounded each committed command's ack up to the next poll).
    # Listeners ack last anyway (after the commit); those that open a form ack first and
    # open it in a task of its own (_open_view_later), so their ack is not held up either.
    if identity is None:
        app = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            name="fusionbot",
            process_before_response=True,
        )
    else:
        result = identity.authorize_result(bot_token)

        async def authorize(**_: Any) -> AuthorizeResult:
            return result

        app = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            name="fusionbot",
            authorize=authorize,
            process_before_response=True,
        )
        home_team = home_team or identity.team_id
    register(app, handle, home_team=home_team, seen_before=seen_before)
    return app


def register(
    app: AsyncApp,
    handle: Handle,
    *,
    home_team: str | None = None,
    seen_before: SeenBefore | None = None,
) -> None:
    async def tip(ack: AsyncAck, body: JSONDict, client: AsyncWebClient) -> None:
        await on_tip_command(ack, _homed(body, home_team), client, handle)

    async def fusion(ack: AsyncAck, body: JSONDict) -> None:
        await on_fusion_command(ack, _homed(body, home_team), handle)

    async def button(ack: AsyncAck, body: JSONDict, client: AsyncWebClient) -> None:
        await on_button(ack, _homed(body, home_team), client, handle)

    async def tip_form(ack: AsyncAck, body: JSONDict) -> None:
        await on_tip_submission(ack, _homed(body, home_team), handle)

    async def input_form(ack: AsyncAck, body: JSONDict) -> None:
        await on_input_submission(ack, _homed(body, home_team), handle)

    async def approve_form(ack: AsyncAck, body: JSONDict) -> None:
        await on_approve_submission(ack, _homed(body, home_team), handle)

    async def message(ack: AsyncAck, body: JSONDict) -> None:
        await on_message_event(ack, _homed(body, home_team), handle, seen_before)

    app.command("/tip")(tip)
    app.command("/fusion")(fusion)
    app.action(_ACTION_PATTERN)(button)
    app.view(modals.TIP_CALLBACK)(tip_form)
    app.view(modals.INPUT_CALLBACK)(input_form)
    app.view(modals.APPROVE_CALLBACK)(approve_form)
    # bolt acknowledges an event before its listener runs; answering it (instead of
    # bolt's 404 for unhandled requests) stops Slack from retrying it.
    app.event("app_mention")(ignore_event)
    # A message may be a command in a DM: like every command it is committed before the
    # ack, so a crash in between makes Slack retry it. app.event() always acks first,
    # hence bolt's own registration with auto_acknowledgement off.
    app._register_listener(
        [message],
        builtin_matchers.event("message", True, base_logger=app._base_logger),
        None,
        None,
        auto_acknowledgement=False,
    )


# ----------------------------------------------------------------------- listeners


async def ignore_event(body: JSONDict) -> None:
    return None


def dm_command_text(text: str) -> str | None:
    """What a DM to the bot says, for the core (None when it says nothing): a command
    ("!claim T-1"), "tip <what>" as officers naturally write it, or plain words, which the
    core answers with the command they probably meant (commands.direct_chat)."""
    # Slack sends message text with &, < and > escaped; the core gets what was typed.
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()
    if text.startswith("!"):
        command = text.lstrip("!").strip()
        return "!" + command if command else None
    return text or None


async def on_message_event(
    ack: AsyncAck, body: JSONDict, handle: Handle, seen_before: SeenBefore | None
) -> None:
    """A person's message in a DM with the bot goes to the core (a command, or words it
    answers); every other message (channels, bots, edits, joins) is acknowledged and
    ignored."""
    event = body.get("event") or {}
    user = str(event.get("user") or "")
    channel = str(event.get("channel") or "")
    event_id = str(body.get("event_id") or "")
    text = dm_command_text(str(event.get("text") or ""))
    if (
        event.get("channel_type") != "im"
        or event.get("bot_id")
        or event.get("subtype")
        or not user
        or not channel
        or not event_id
        or text is None
    ):
        await ack()
        return
    try:
        retried = seen_before is not None and await seen_before(event_id)
    except Exception:
        # Not acknowledged: Slack delivers it again, and the check runs again.
        log.exception("slack: could not check event %s for a retry", event_id)
        return
    if retried:
        log.info("slack: event %s was already handled; a retry is ignored", event_id)
        await ack()
        return
    await _handle(
        handle,
        Command(
            actor=_address(body, user),
            channel=_address(body, channel),
            text=text,
            is_dm=True,
            source_key=_source_key(body, f"event:{event_id}"),
        ),
        ack,
    )


async def on_tip_command(
    ack: AsyncAck, body: JSONDict, client: AsyncWebClient, handle: Handle
) -> None:
    text = str(body.get("text") or "").strip()
    channel_id = str(body.get("channel_id") or "")
    if not text:
        await ack()
        _open_view_later(
            client, body, modals.tip_modal(channel_id), fallback="!help tip", handle=handle
        )
        return
    await _handle(handle, _slash_command(body, "!tip " + text), ack)


async def on_fusion_command(ack: AsyncAck, body: JSONDict, handle: Handle) -> None:
    text = str(body.get("text") or "").strip().lstrip("!").strip()
    await _handle(handle, _slash_command(body, "!" + text if text else "!help"), ack)


async def on_button(ack: AsyncAck, body: JSONDict, client: AsyncWebClient, handle: Handle) -> None:
    actions = body.get("actions") or []
    value = str((actions[0] if actions else {}).get("value") or "").strip().lstrip("!").strip()
    user = str((body.get("user") or {}).get("id") or "")
    channel = _interaction_channel(body)
    message_ts = _message_ts(body)
    trigger = str(body.get("trigger_id") or "")
    if not value or not user or not channel:
        await ack()
        log.warning("slack: a button click without value, user or channel was ignored")
        return
    if modals.opens_approve_form(value):
        await ack()
        view = modals.approve_modal(value.split()[1], channel, message_ts)
        _open_view_later(client, body, view, fallback="!help approve", handle=handle)
        return
    if modals.needs_input(value):
        await ack()
        view = modals.input_modal(value, channel, message_ts)
        _open_view_later(
            client, body, view, fallback="!help " + value.split(" ", 1)[0], handle=handle
        )
        return
    await _handle(
        handle,
        Command(
            actor=_address(body, user),
            channel=_address(body, channel),
            text="!" + value,
            is_dm=channel.startswith("D"),
            source_key=_source_key(body, trigger) if trigger else None,
            source_ref=message_ts,
        ),
        ack,
    )


async def on_tip_submission(ack: AsyncAck, body: JSONDict, handle: Handle) -> None:
    view = body.get("view") or {}
    form = modals.tip_form((view.get("state") or {}).get("values") or {})
    if form is None:
        await ack(response_action="errors", errors={"summary": "Please describe what you saw."})
        return
    channel = str(modals.metadata(view).get("channel") or "")
    command = _view_command(body, channel, modals.tip_text(form), source_ref=None)
    await _handle(handle, replace(command, form=form), ack)


async def on_input_submission(ack: AsyncAck, body: JSONDict, handle: Handle) -> None:
    view = body.get("view") or {}
    meta = modals.metadata(view)
    command = str(meta.get("command") or "").strip()
    if not modals.needs_input(command):
        await ack()
        log.warning("slack: a form submission without a known command was ignored")
        return
    typed = modals.state_value((view.get("state") or {}).get("values") or {}, "input")
    prompt = modals.INPUT_PROMPTS[command.split(" ", 1)[0].lower()]
    if prompt.required and not typed:
        await ack(response_action="errors", errors={"input": f"Please fill in: {prompt.label}."})
        return
    text = modals.input_text(command, typed)
    ts = meta.get("ts")
    await _handle(
        handle,
        _view_command(
            body, str(meta.get("channel") or ""), text, source_ref=str(ts) if ts else None
        ),
        ack,
    )


async def on_approve_submission(ack: AsyncAck, body: JSONDict, handle: Handle) -> None:
    """The approve form becomes ``!approve T-1 …`` without confirm: the core checks the
    values and answers with the preview, whose button confirms."""
    view = body.get("view") or {}
    meta = modals.metadata(view)
    tip_ref = str(meta.get("tip") or "").strip()
    if not tip_ref or len(tip_ref.split()) != 1:
        await ack()
        log.warning("slack: an approve form without its tip was ignored")
        return
    text, errors = modals.approve_text(tip_ref, (view.get("state") or {}).get("values") or {})
    if text is None:
        await ack(response_action="errors", errors=errors)
        return
    ts = meta.get("ts")
    await _handle(
        handle,
        _view_command(
            body, str(meta.get("channel") or ""), text, source_ref=str(ts) if ts else None
        ),
        ack,
    )


# ------------------------------------------------------------------------- helpers


def _team_id(body: JSONDict) -> str:
    team = body.get("team")
    if isinstance(team, dict):
        return str(team.get("id") or "")
    return str(body.get("team_id") or (body.get("view") or {}).get("team_id") or "")


# Set on a request's body by register() when it comes from a workspace other than the
# home one: that team id prefixes the request's channel and user ids.
_FOREIGN_TEAM = "_fusionbot_foreign_team"


def _homed(body: JSONDict, home_team: str | None) -> JSONDict:
    """Mark a request from an installation in another workspace. Slack Connect channels
    (``is_ext_shared_channel``) keep plain ids: they are reached with the home token."""
    team = _team_id(body)
    if home_team is None or not team or team == home_team or body.get("is_ext_shared_channel"):
        return body
    return {**body, _FOREIGN_TEAM: team}


def _address(body: JSONDict, local_id: str) -> str:
    """``slack:<id>``, or ``slack:<team>/<id>`` for a request from another workspace."""
    team = body.get(_FOREIGN_TEAM)
    return f"slack:{team}/{local_id}" if team else f"slack:{local_id}"


def _source_key(body: JSONDict, unique: str) -> str:
    return f"slack:{_team_id(body)}:{unique}"


def _slash_command(body: JSONDict, text: str) -> Command:
    channel = str(body.get("channel_id") or "")
    return Command(
        actor=_address(body, str(body.get("user_id") or "")),
        channel=_address(body, channel),
        text=text,
        is_dm=channel.startswith("D"),
        source_key=_source_key(body, str(body.get("trigger_id") or "")),
    )


def _view_command(body: JSONDict, channel: str, text: str, *, source_ref: str | None) -> Command:
    user = str((body.get("user") or {}).get("id") or "")
    view_id = str((body.get("view") or {}).get("id") or "")
    return Command(
        actor=_address(body, user),
        channel=_address(body, channel),
        text=text,
        is_dm=channel.startswith("D"),
        source_key=_source_key(body, f"view:{view_id}"),
        source_ref=source_ref,
    )


def _interaction_channel(body: JSONDict) -> str:
    channel = body.get("channel") or {}
    container = body.get("container") or {}
    return str(channel.get("id") or container.get("channel_id") or "")


def _message_ts(body: JSONDict) -> str | None:
    message = body.get("message") or {}
    container = body.get("container") or {}
    ts = message.get("ts") or container.get("message_ts")
    return str(ts) if ts else None


async def _handle(handle: Handle, command: Command, ack: AsyncAck | None = None) -> None:
    """Hand over to the core, then ack: the core commits within milliseconds, well inside
    Slack's 3 seconds. Never let an exception reach bolt (it would discard the ack)."""
    if command.actor.endswith((":", "/")) or command.channel.endswith((":", "/")):
        # A request without its user or channel (Slack always sends both): there is nobody
        # to answer and nowhere to answer, and a reply to "slack:" could never be delivered.
        log.warning("slack: a request without user or channel was ignored")
        if ack is not None:
            await ack()
        return
    try:
        await handle(command)
    except Exception:
        log.exception("slack: handling %r from %s failed", command.text[:100], command.actor)
    finally:
        if ack is not None:
            await ack()


# Forms being opened after their request was acknowledged (a reference to each task until
# it is done, so that it is not collected half-way).
_opening: set[asyncio.Task[None]] = set()


def _open_view_later(
    client: AsyncWebClient, body: JSONDict, view: JSONDict, *, fallback: str, handle: Handle
) -> None:
    """Open a form once the listener has returned (and bolt has answered the request with
    the ack), as bolt did when it ran listeners in the background."""
    task = asyncio.create_task(_open_view(client, body, view, fallback=fallback, handle=handle))
    _opening.add(task)
    task.add_done_callback(_opening.discard)


async def _open_view(
    client: AsyncWebClient, body: JSONDict, view: JSONDict, *, fallback: str, handle: Handle
) -> None:
    """A small view opened at once, within the trigger's 3 seconds, then filled with
    ``view`` by views.update; if Slack refuses either, say how to type the command."""
    trigger_id = str(body.get("trigger_id") or "")
    try:
        opened = await client.views_open(trigger_id=trigger_id, view=modals.loading_modal(view))
        view_id = str((opened.get("view") or {}).get("id") or "")
        await client.views_update(view_id=view_id, view=view)
    except Exception:
        log.exception("slack: opening a form failed; answering with %s", fallback)
        user = str((body.get("user") or {}).get("id") or body.get("user_id") or "")
        channel = str(body.get("channel_id") or _interaction_channel(body))
        await _handle(
            handle,
            Command(
                actor=_address(body, user),
                channel=_address(body, channel),
                text=fallback,
                is_dm=channel.startswith("D"),
            ),
        )
