"""Counts in the bot's messages agree with their nouns."""

from __future__ import annotations

import pytest

from bot.wording import counted


@pytest.mark.parametrize(
    ("n", "noun", "plural", "said"),
    [
        (1, "copy", None, "1 copy"),
        (4, "copy", None, "4 copies"),
        (0, "delivery", None, "0 deliveries"),
        (2, "day", None, "2 days"),
        (1, "alert", None, "1 alert"),
        (1_000, "partner", None, "1,000 partners"),
        (2, "person", "people", "2 people"),
    ],
)
def test_counted(n: int, noun: str, plural: str | None, said: str) -> None:
    assert counted(n, noun, plural) == said
