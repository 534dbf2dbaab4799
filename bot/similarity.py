"""'Similar open tips' on a review card: simple, explainable, good enough to spot repeats."""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from bot.tips import Tip

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are at by for from had has have he her him his in into is it its near of on or "
    "our she that the their them they this to was were with who man men woman women person "
    "people someone seen saw".split()
)


class TipText(NamedTuple):
    """What similarity looks at in a candidate, loaded as a tuple per row, not a whole tip."""

    id: int
    summary: str
    details: str | None
    location: str | None

    @property
    def ref(self) -> str:
        return f"T-{self.id}"


@dataclass(frozen=True)
class Similar:
    tip: Tip | TipText
    why: str


def _words(text: str | None) -> frozenset[str]:
    return _significant_words(text) if text else frozenset()


@lru_cache(maxsize=8192)
def _significant_words(text: str) -> frozenset[str]:
    # Cached: every card render reads the same few hundred open tips' texts again.
    return frozenset(w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _STOP)


@lru_cache(maxsize=8192)
def _text_words(summary: str | None, details: str | None) -> frozenset[str]:
    # A candidate's summary and details together, cached as one set (one look-up and no
    # union per candidate per render).
    return _words(summary) | _words(details)


@lru_cache(maxsize=8192)
def _place(location: str | None) -> str:
    return (location or "").strip().lower()


# --- Terms: what the index of open tips (storage table tip_terms) holds for each tip ----
# A tip shares a term with another exactly when they share a significant word or the place,
# so the database can find and rank candidates by terms alone; the reasons shown are then
# worded from the candidates' own text by similar_tips, as for any candidate.

PLACE_PREFIX = "@"  # a word is [a-z0-9]+, so a place term never equals a word term
_TERM_CHARS = 64  # longer words and places are stored as a digest: index keys stay short


def _bounded(term: str) -> str:
    if len(term) <= _TERM_CHARS:
        return term
    return term[:40] + "~" + hashlib.blake2b(term.encode(), digest_size=8).hexdigest()


def word_terms(summary: str | None, details: str | None) -> frozenset[str]:
    """The terms for a tip's significant words (summary and details together)."""
    return frozenset(map(_bounded, _text_words(summary, details)))


def place_term(location: str | None) -> str | None:
    """The term for a tip's place (normalised as for "same place"), None without one."""
    place = _place(location)
    return PLACE_PREFIX + _bounded(place) if place else None


def tip_terms(summary: str | None, details: str | None, location: str | None) -> frozenset[str]:
    """Every term of a tip: what the index holds for it while it is open."""
    place = place_term(location)
    words = word_terms(summary, details)
    return words | {place} if place else words


def similar_tips(
    tip: Tip | TipText, candidates: Sequence[Tip | TipText], *, limit: int = 3
) -> list[Similar]:
    """Of the candidates, those at the same place or sharing at least two significant
    words, best first (3 for the same place plus the shared words; newest first among
    equals), each with the reason. A card passes the few the database ranked best among
    the recent open tips (``storage.tips_repo.similar_open_tips``), ranked the same way."""
    mine = _text_words(tip.summary, tip.details)
    place = _place(tip.location)
    # Score every candidate, word the reasons for the few shown only.
    # (-score, -id, …): the best first, the newest first among equals; ids are unique, so
    # the comparison never reaches the rest.
    scored: list[tuple[int, int, bool, frozenset[str], Tip | TipText]] = []
    for other in candidates:
        if other.id == tip.id:
            continue
        same_place = bool(place) and place == _place(other.location)
        shared = mine & _text_words(other.summary, other.details)
        if len(shared) < 2:
            if not same_place:
                continue
            shared = frozenset()
        scored.append((-(3 * same_place + len(shared)), -other.id, same_place, shared, other))
    found = []
    for _, _, same_place, shared, other in heapq.nsmallest(limit, scored):
        reasons = ["same place"] if same_place else []
        if shared:
            reasons.append("shares " + ", ".join(sorted(shared)[:4]))
        found.append(Similar(other, "; ".join(reasons)))
    return found
