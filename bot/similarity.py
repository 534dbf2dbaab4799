"""'Similar open tips' on a review card: simple, explainable, good enough to spot repeats."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.tips import Tip

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are at by for from had has have he her him his in into is it its near of on or "
    "our she that the their them they this to was were with who man men woman women person "
    "people someone seen saw".split()
)


@dataclass(frozen=True)
class Similar:
    tip: Tip
    why: str


def _words(text: str | None) -> set[str]:
    if not text:
        return set()
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _STOP}


def similar_tips(tip: Tip, candidates: list[Tip], *, limit: int = 3) -> list[Similar]:
    """Tips at the same place, or sharing at least two significant words."""
    mine = _words(tip.summary) | _words(tip.details)
    place = (tip.location or "").strip().lower()
    scored: list[tuple[int, int, Similar]] = []
    for other in candidates:
        if other.id == tip.id:
            continue
        reasons = []
        score = 0
        if place and place == (other.location or "").strip().lower():
            reasons.append("same place")
            score += 3
        shared = mine & (_words(other.summary) | _words(other.details))
        if len(shared) >= 2:
            reasons.append("shares " + ", ".join(sorted(shared)[:4]))
            score += len(shared)
        if reasons:
            scored.append((score, other.id, Similar(other, "; ".join(reasons))))
    scored.sort(key=lambda s: (-s[0], -s[1]))
    return [s for _, _, s in scored[:limit]]
