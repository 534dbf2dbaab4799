"""nio's key store, without a database transaction per sync for nothing.

After every sync nio saves the set of encrypted rooms it saw (``save_encrypted_rooms``):
a synchronous SQLite transaction on the event loop's thread, even when the set is empty
or every room in it is saved already — 0.4–0.5 ms of the loop's time per sync on the
benchmark machine, more on a slow disk, and a sync comes with every message in any of
the bot's rooms. Rooms this process has saved are left out; the first time it sees a
room it saves it, as nio would (saving a saved room is a no-op for nio too).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nio.store import DefaultStore


class KeyStore(DefaultStore):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saved_encrypted_rooms: set[str] = set()

    def save_encrypted_rooms(self, rooms: Iterable[str]) -> None:
        new = set(rooms) - self._saved_encrypted_rooms
        if not new:
            return
        super().save_encrypted_rooms(new)
        self._saved_encrypted_rooms |= new
