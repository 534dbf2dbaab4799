"""One Matrix connection for a running bot: the login, the sync loop and the sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from nio import AsyncClient

from adapters.matrix.listener import Handle, MatrixListener
from adapters.matrix.sender import MatrixSender
from adapters.matrix.session import DirectRooms, MatrixAccount, open_session
from bot.core import Core
from bot.delivery import Sender

log = logging.getLogger(__name__)

RESTART_PAUSE = 5.0


class MatrixRuntime:
    def __init__(self, client: AsyncClient, listener: MatrixListener, sender: MatrixSender):
        self.client = client
        self.listener = listener
        self.sender = sender
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        account: MatrixAccount,
        core: Core,
        handle: Handle,
        data_dir: Path,
        add_sender: Callable[[Sender], None],
    ) -> MatrixRuntime:
        """Log in, start syncing, and hand the sender to the outbox once the first sync
        has shown the bot its rooms (encrypted rooms can't be written to before)."""
        client = await open_session(account, core.db, data_dir)
        direct = DirectRooms(client)
        sender = MatrixSender(
            client, remember_direct=direct.remember, direct_rooms=direct.by_person
        )
        runtime = cls(client, MatrixListener(client, core, handle, direct), sender)
        runtime._task = asyncio.create_task(runtime._run(add_sender), name="matrix-sync")
        return runtime

    async def _run(self, add_sender: Callable[[Sender], None]) -> None:
        waiter = asyncio.create_task(self.listener.ready.wait())
        waiter.add_done_callback(lambda done: done.cancelled() or add_sender(self.sender))
        try:
            while True:
                try:
                    await self.listener.run()
                    return  # stopped
                except Exception:
                    # The loop handles the homeserver's and handlers' failures itself; this
                    # is anything else (the database at start). Start over from the saved
                    # sync token rather than leave Matrix silent.
                    log.exception("matrix: the sync loop failed; starting it again in 5 s")
                    await asyncio.sleep(RESTART_PAUSE)
        finally:
            waiter.cancel()

    async def wait_ready(self, seconds: float = 60.0) -> None:
        """Until the first sync is done (the sender is then in the outbox)."""
        await asyncio.wait_for(self.listener.ready.wait(), seconds)

    async def stop(self) -> None:
        """Stop syncing and save the sync position. The client stays open for the outbox
        worker until ``close``."""
        self.listener.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.listener.save_position()
        except Exception:
            # A deposed leader may have lost the database: the next start sees the events
            # since the last save again, and recognises those it acted on.
            log.exception("matrix: could not save the sync position at stop")

    async def close(self) -> None:
        await self.stop()
        await self.client.close()
