"""The bot's Matrix login: one device for good, by password or access token; clear
refusals for wrong credentials (against a real Synapse); its key store keeps what nio
gives it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nio.crypto import OlmAccount

from adapters.matrix.key_store import KeyStore
from adapters.matrix.session import MatrixAccount, MatrixLoginError, open_session
from storage.db import Database
from tests.matrix_server import SynapseServer
from tests.matrix_server.fixtures import synapse  # noqa: F401


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    await db.upgrade()
    yield db
    await db.dispose()


async def test_password_logins_keep_one_device_and_a_token_login_joins_it(
    synapse: SynapseServer,  # noqa: F811
    database: Database,
    tmp_path: Path,
) -> None:
    password = secrets.token_urlsafe(12)
    user = await asyncio.to_thread(synapse.register, f"bot-{secrets.token_hex(3)}", password)
    account = MatrixAccount(synapse.url, user.user_id, password=password)
    first = await open_session(account, database, tmp_path)
    device, token = first.device_id, first.access_token
    await first.close()
    second = await open_session(account, database, tmp_path)
    assert second.device_id == device  # the same device after a restart
    token = second.access_token
    await second.close()
    assert (tmp_path / "matrix-store").stat().st_mode & 0o777 == 0o700

    by_token = await open_session(
        MatrixAccount(synapse.url, user.user_id, access_token=token), database, tmp_path
    )
    assert by_token.device_id == device and by_token.logged_in
    await by_token.close()

    with pytest.raises(MatrixLoginError, match="belongs to device"):
        await open_session(
            MatrixAccount(synapse.url, user.user_id, access_token=token, device_id="OTHER"),
            database,
            tmp_path,
        )


async def test_wrong_credentials_are_refused_clearly(
    synapse: SynapseServer,  # noqa: F811
    database: Database,
    tmp_path: Path,
) -> None:
    user = await asyncio.to_thread(synapse.register, f"bot-{secrets.token_hex(3)}", "right-pw")
    with pytest.raises(MatrixLoginError, match=r"login as .* failed"):
        await open_session(
            MatrixAccount(synapse.url, user.user_id, password="wrong-pw"), database, tmp_path
        )
    with pytest.raises(MatrixLoginError, match="MATRIX_ACCESS_TOKEN was refused"):
        await open_session(
            MatrixAccount(synapse.url, user.user_id, access_token="syt_forged"),
            database,
            tmp_path,
        )


def test_the_key_store_keeps_every_encrypted_room_across_a_restart(tmp_path: Path) -> None:
    # nio hands the store the encrypted rooms it saw after every sync; the bot's store
    # skips those it saved already, and still has every one of them at the next start.
    store = KeyStore("@bot:example.org", "DEVICE", str(tmp_path))
    store.save_account(OlmAccount())
    a, b = "!a:example.org", "!b:example.org"
    for seen in (set(), {a}, {a}, {a, b}, set()):
        store.save_encrypted_rooms(seen)
    restarted = KeyStore("@bot:example.org", "DEVICE", str(tmp_path))
    assert restarted.load_encrypted_rooms() == {a, b}
