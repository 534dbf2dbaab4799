"""Small pieces of English the bot's messages share."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``counted(1, "copy")`` -> ``1 copy``; ``counted(3, "copy")`` -> ``3 copies``.
    Irregular plurals are given: ``counted(2, "person", "people")``."""
    if n == 1:
        return f"1 {noun}"
    if plural is None:
        consonant_y = noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u")
        plural = noun[:-1] + "ies" if consonant_y else noun + "s"
    return f"{n:,} {plural}"
