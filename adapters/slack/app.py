"""The Slack adapter's bolt app: slash commands, buttons and modals become neutral Commands.

Listeners only validate, hand the command to the core (which commits it) and then ack,
so a request Slack saw acknowledged is never lost; every answer goes through the outbox. The one Web API call made from a listener is ``views.open``, because its
trigger_id lives only 3 seconds. A listener never raises: with bolt 1.30 an exception
right after ``ack()`` makes bolt discard the ack (see ../shared/notes/slack.md).

The core checks who may do what on every command, typed or clicked; a button's value is
only the text command it stands for and is trusted no further.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import modals
from commands.context import Command

log = logging.getLogger(__name__)

Handle = Callable[[Command], Awaitable[bool]]
JSONDict = dict[str, Any]

ACTION_PREFIX = "fusion:"
_ACTION_PATTERN = re.compile("^" + re.escape(ACTION_PREFIX))


def create_slack_app(
    handle: Handle, *, bot_token: str, signing_secret: str, api_url: str | None
) -> AsyncApp:
    """A bolt AsyncApp wired to ``handle`` (``FusionBot.handle`` in production)."""
    client = (
        AsyncWebClient(token=bot_token, base_url=api_url)
        if api_url
        else AsyncWebClient(token=bot_token)
    )
    app = AsyncApp(client=client, signing_secret=signing_secret, name="fusionbot")
    register(app, handle)
    return app


def register(app: AsyncApp, handle: Handle) -> None:
    async def tip(ack: AsyncAck, body: JSONDict, client: AsyncWebClient) -> None:
        await on_tip_command(ack, body, client, handle)

    async def fusion(ack: AsyncAck, body: JSONDict) -> None:
        await on_fusion_command(ack, body, handle)

    async def button(ack: AsyncAck, body: JSONDict, client: AsyncWebClient) -> None:
        await on_button(ack, body, client, handle)

    async def tip_form(ack: AsyncAck, body: JSONDict) -> None:
        await on_tip_submission(ack, body, handle)

    async def input_form(ack: AsyncAck, body: JSONDict) -> None:
        await on_input_submission(ack, body, handle)

    app.command("/tip")(tip)
    app.command("/fusion")(fusion)
    app.action(_ACTION_PATTERN)(button)
    app.view(modals.TIP_CALLBACK)(tip_form)
    app.view(modals.INPUT_CALLBACK)(input_form)
    # Events are acknowledged by bolt before the listener runs; answering them (instead of
    # bolt's 404 for unhandled requests) stops Slack from retrying them.
    app.event("app_mention")(ignore_event)
    app.event("message")(ignore_event)


# ----------------------------------------------------------------------- listeners


async def ignore_event(body: JSONDict) -> None:
    return None


async def on_tip_command(
    ack: AsyncAck, body: JSONDict, client: AsyncWebClient, handle: Handle
) -> None:
    text = str(body.get("text") or "").strip()
    channel_id = str(body.get("channel_id") or "")
    if not text:
        await ack()
        await _open_view(
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
    if modals.needs_input(value):
        await ack()
        view = modals.input_modal(value, channel, message_ts)
        await _open_view(
            client, body, view, fallback="!help " + value.split(" ", 1)[0], handle=handle
        )
        return
    await _handle(
        handle,
        Command(
            actor=f"slack:{user}",
            channel=f"slack:{channel}",
            text="!" + value,
            is_dm=channel.startswith("D"),
            source_key=_source_key(body, trigger) if trigger else None,
            source_ref=message_ts,
        ),
        ack,
    )


async def on_tip_submission(ack: AsyncAck, body: JSONDict, handle: Handle) -> None:
    view = body.get("view") or {}
    text = modals.tip_text((view.get("state") or {}).get("values") or {})
    if text is None:
        await ack(response_action="errors", errors={"summary": "Please describe what you saw."})
        return
    channel = str(modals.metadata(view).get("channel") or "")
    await _handle(handle, _view_command(body, channel, text, source_ref=None), ack)


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


# ------------------------------------------------------------------------- helpers


def _team_id(body: JSONDict) -> str:
    team = body.get("team")
    if isinstance(team, dict):
        return str(team.get("id") or "")
    return str(body.get("team_id") or (body.get("view") or {}).get("team_id") or "")


def _source_key(body: JSONDict, unique: str) -> str:
    return f"slack:{_team_id(body)}:{unique}"


def _slash_command(body: JSONDict, text: str) -> Command:
    channel = str(body.get("channel_id") or "")
    return Command(
        actor=f"slack:{body.get('user_id') or ''}",
        channel=f"slack:{channel}",
        text=text,
        is_dm=channel.startswith("D"),
        source_key=_source_key(body, str(body.get("trigger_id") or "")),
    )


def _view_command(body: JSONDict, channel: str, text: str, *, source_ref: str | None) -> Command:
    user = str((body.get("user") or {}).get("id") or "")
    view_id = str((body.get("view") or {}).get("id") or "")
    return Command(
        actor=f"slack:{user}",
        channel=f"slack:{channel}",
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
    try:
        await handle(command)
    except Exception:
        log.exception("slack: handling %r from %s failed", command.text[:100], command.actor)
    finally:
        if ack is not None:
            await ack()


async def _open_view(
    client: AsyncWebClient, body: JSONDict, view: JSONDict, *, fallback: str, handle: Handle
) -> None:
    """views.open within the trigger's 3 seconds; if Slack refuses, say how to type it."""
    trigger_id = str(body.get("trigger_id") or "")
    try:
        await client.views_open(trigger_id=trigger_id, view=view)
    except Exception:
        log.exception("slack: views.open failed; answering with %s", fallback)
        user = str((body.get("user") or {}).get("id") or body.get("user_id") or "")
        channel = str(body.get("channel_id") or _interaction_channel(body))
        await _handle(
            handle,
            Command(
                actor=f"slack:{user}",
                channel=f"slack:{channel}",
                text=fallback,
                is_dm=channel.startswith("D"),
            ),
        )
