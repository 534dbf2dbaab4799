"""pytest fixtures around one Synapse per test session, and logged-in nio clients.

Use from a test module:

    from tests.matrix_server.fixtures import make_client, synapse  # noqa: F401

Clients from make_client() must be closed (`await client.close()`); the
`matrix_clients` fixture closes the ones it makes for you.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from nio import AsyncClient, AsyncClientConfig, LoginResponse

from tests.matrix_server.synapse import SynapseServer

# 429s fail the test instead of nio retrying forever; a dead server fails fast.
CLIENT_CONFIG = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=2)

MakeClient = Callable[[str], Awaitable[AsyncClient]]


class _SharedServer:
    """One server per session even when several test modules import the fixture.

    pytest registers an imported fixture once per importing module, each with its own
    session-scoped cache; without this every such module would start its own Synapse.
    """

    server: SynapseServer | None = None
    users = 0

    @classmethod
    def acquire(cls) -> SynapseServer:
        if cls.server is None:
            server = SynapseServer()
            server.start()
            cls.server = server
        cls.users += 1
        return cls.server

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0 and cls.server is not None:
            cls.server.close()
            cls.server = None


@pytest.fixture(scope="session")
def synapse() -> Iterator[SynapseServer]:
    """A running Synapse ("fusion.test" on 127.0.0.1), shared by the whole session."""
    server = _SharedServer.acquire()
    try:
        yield server
    finally:
        _SharedServer.release()


async def make_client(
    synapse: SynapseServer, localpart: str, *, password: str | None = None
) -> AsyncClient:
    """Register a fresh user (localpart plus a random suffix) and log a nio client in.

    The caller owns the client and must `await client.close()`.
    """
    unique = f"{localpart}-{secrets.token_hex(4)}"
    password = password or secrets.token_urlsafe(16)
    user = await asyncio.to_thread(synapse.register, unique, password)
    store = synapse.data_dir / "nio-stores" / unique
    store.mkdir(parents=True)
    client = AsyncClient(synapse.url, user.user_id, store_path=str(store), config=CLIENT_CONFIG)
    response = await client.login(password, device_name=f"fusionbot tests ({localpart})")
    if not isinstance(response, LoginResponse):
        await client.close()
        raise RuntimeError(f"login as {user.user_id} failed: {response}")
    return client


@pytest.fixture
async def matrix_clients(synapse: SynapseServer) -> AsyncIterator[MakeClient]:
    """A factory for logged-in clients that are all closed when the test ends."""
    clients: list[AsyncClient] = []

    async def make(localpart: str) -> AsyncClient:
        client = await make_client(synapse, localpart)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
