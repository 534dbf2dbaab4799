"""The Synapse harness itself: a real homeserver, real clients, a notice end to end."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
from nio import (
    AsyncClient,
    JoinResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageNotice,
    RoomSendResponse,
    SyncResponse,
)

from tests.matrix_server import SynapseAPIError, SynapseServer, SynapseStartError
from tests.matrix_server.fixtures import make_client, synapse  # noqa: F401


async def sync_until(
    client: AsyncClient, found: Callable[[SyncResponse], bool], within: float = 10.0
) -> SyncResponse:
    """Long-poll /sync from the client's last position until `found` holds."""
    async with asyncio.timeout(within):
        while True:
            response = await client.sync(timeout=1000)
            assert isinstance(response, SyncResponse), response
            if found(response):
                return response


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_notice_reaches_an_invited_user(synapse: SynapseServer) -> None:  # noqa: F811
    alice = await make_client(synapse, "alice")
    bob = await make_client(synapse, "bob")
    try:
        assert alice.user_id.endswith(":fusion.test")
        await bob.sync(timeout=0)  # initial sync: later syncs only carry what is new

        created = await alice.room_create(name="review")
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        invited = await alice.room_invite(room_id, bob.user_id)
        assert isinstance(invited, RoomInviteResponse), invited

        await sync_until(bob, lambda sync: room_id in sync.rooms.invite)
        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), joined
        await sync_until(bob, lambda sync: room_id in sync.rooms.join)

        # With encryption support installed, nio sends only to rooms its sync has shown.
        await alice.sync(timeout=0, full_state=True)
        sent = await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.notice", "body": "TIP T-1 received"}
        )
        assert isinstance(sent, RoomSendResponse), sent

        def has_notice(sync: SyncResponse) -> bool:
            room = sync.rooms.join.get(room_id)
            return room is not None and any(
                isinstance(event, RoomMessageNotice)
                and event.event_id == sent.event_id
                and event.sender == alice.user_id
                and event.body == "TIP T-1 received"
                for event in room.timeline.events
            )

        await sync_until(bob, has_notice)
    finally:
        await alice.close()
        await bob.close()


def test_register_admin_and_override_ratelimit(synapse: SynapseServer) -> None:  # noqa: F811
    admin = synapse.register("harness-admin", "secret-pw", admin=True)
    bot = synapse.register("harness-bot", "secret-pw")
    assert admin.user_id == synapse.user_id("harness-admin")
    assert admin.access_token and admin.device_id

    assert synapse.override_ratelimit(bot.user_id, admin.access_token) == {
        "messages_per_second": 0,
        "burst_count": 0,
    }
    with pytest.raises(SynapseAPIError) as not_admin:
        synapse.override_ratelimit(admin.user_id, bot.access_token)
    assert not_admin.value.status == 403
    with pytest.raises(SynapseAPIError) as taken:
        synapse.register("harness-bot", "other-pw")
    assert taken.value.status == 400


def test_stop_ends_the_process_and_servers_start_again() -> None:
    first = SynapseServer(server_name="first.test")
    second = SynapseServer(server_name="second.test")
    try:
        first.start()
        first_pid = first.pid
        assert first_pid is not None and process_exists(first_pid)
        first.register("keeper", "keeper-pw")

        first.stop()
        assert not first.running
        assert not process_exists(first_pid)
        with pytest.raises(OSError):  # nothing listens there any more
            first.request("GET", "/_matrix/client/versions", timeout=2.0)

        # A new server and a restart of the first, launched side by side.
        second.launch()
        first.launch()
        second.wait_until_ready()
        first.wait_until_ready()

        assert second.port != first.port
        assert "versions" in second.request("GET", "/_matrix/client/versions")
        assert first.pid != first_pid
        login = first.request(  # the restart kept port, database and users
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "keeper"},
                "password": "keeper-pw",
            },
        )
        assert login["user_id"] == "@keeper:first.test"
    finally:
        pids = [pid for pid in (first.pid, second.pid) if pid is not None]
        first.close()
        second.close()
    assert pids and not any(process_exists(pid) for pid in pids)
    assert not first.running and not second.running


def test_a_server_that_fails_to_start_reports_its_log() -> None:
    server = SynapseServer(extra_config={"database": {"name": "nosuchdb"}})
    try:
        with pytest.raises(SynapseStartError, match="Unsupported database type 'nosuchdb'"):
            server.start()
        assert not server.running
    finally:
        server.close()
