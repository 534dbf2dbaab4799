"""The audit log's hash chain: how a row is hashed and how a chain is checked. Pure; no I/O.

Each row's hash covers its own fields and the previous row's hash, so editing, deleting or
reordering any row breaks the chain from there on. A separate head (last id, last hash)
catches rows cut off the end, which the chain alone cannot see. A log cut off consistently
(rows and head together, or wiped) still links, so the records are checked against it too:
every tip has the entry that filed it and every alert the one that created it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.wording import counted

GENESIS = "0" * 64

# The entries that bring a record into being, written in the record's own transaction
# (bot/intake.py, bot/alert_release.py): a record without one lost it from the log.
TIP_FILED = "tip.filed"
ALERT_CREATED = "alert.created"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)
    # Records checked against the log for their creating entry, by noun ("tip": 3).
    records: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordKind:
    """Records of one kind that each have an entry recording their creation."""

    noun: str  # "tip"
    ref_prefix: str  # "T-": a record's ref, the entry's subject, is prefix + id
    action: str  # the creating entry's action


TIPS = RecordKind("tip", "T-", TIP_FILED)
ALERTS = RecordKind("alert", "A-", ALERT_CREATED)

# Ranges of missing records named in full; past that, how many more.
_MISSING_RANGES_SHOWN = 20


def _json(value: Any, *, canonical: bool) -> str:
    # allow_nan=False: NaN and Infinity are not JSON; PostgreSQL would refuse them, so a
    # row hashed with them could never be stored and reloaded with the same hash.
    if canonical:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def normalize_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """``details`` as it will come back from the database's JSON column.

    Hashing tuples, non-string keys and the like as given would produce a hash that the
    reloaded row (lists, string keys) no longer matches, so they are normalised first;
    values JSON cannot hold (datetimes, sets, NaN) are refused here rather than later.
    """
    if details is None:
        return {}
    normal = json.loads(_json(dict(details), canonical=False))
    if not isinstance(normal, dict):  # pragma: no cover - dict() above guarantees it
        raise TypeError("audit details must be a JSON object")
    return normal


def canonical_time(at: datetime) -> str:
    """``at`` as ISO-8601 UTC with microseconds, whatever zone it was given in."""
    if at.tzinfo is None or at.utcoffset() is None:
        # astimezone() would read a naive time as local time and hash the wrong instant.
        raise ValueError("audit times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    id: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """The SHA-256 (hex) of a row's canonical JSON form.

    Stable across SQLite and PostgreSQL round trips: keys are sorted (PostgreSQL's json
    keeps insertion order but a re-serialiser need not), and the time is written in one
    fixed form, so a datetime reloaded in another zone object still hashes the same.
    """
    document = {
        "id": id,
        "at": canonical_time(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_json(document, canonical=True).encode("utf-8")).hexdigest()


def document_around_chain(
    at: datetime, actor: str, action: str, subject: str, details: Mapping[str, Any]
) -> tuple[str, str]:
    """The canonical form :func:`entry_hash` hashes, but for the two fields the chain
    supplies: it is ``start + str(id) + ',"prev_hash":' + <prev_hash as JSON> + end``
    (keys sorted: action, actor, at, details, id, prev_hash, subject). Lets the database
    hash a row whose id and predecessor only it knows when it appends it."""
    known = {
        "action": action,
        "actor": actor,
        "at": canonical_time(at),
        "details": details,
    }
    start = _json(known, canonical=True)[:-1] + ',"id":'
    end = ',"subject":' + _json(subject, canonical=True) + "}"
    return start, end


def _rows(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first} to {last}"


def _were(first: int, last: int) -> str:
    return f"{_rows(first, last)} {'was' if first == last else 'were'}"


def _id_ranges(ids: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for record_id in sorted(ids):
        if ranges and record_id == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], record_id)
        else:
            ranges.append((record_id, record_id))
    return ranges


def _refs(kind: RecordKind, first: int, last: int) -> str:
    if last - first > 1:
        return f"{kind.ref_prefix}{first} to {kind.ref_prefix}{last}"
    return ", ".join(f"{kind.ref_prefix}{n}" for n in range(first, last + 1))


def missing_entries_problem(kind: RecordKind, ids: list[int]) -> str | None:
    """The problem to report for records of ``kind`` whose creating entry is not in the
    log (``ids``), or None when there are none."""
    if not ids:
        return None
    ranges = _id_ranges(ids)
    named = [_refs(kind, first, last) for first, last in ranges[:_MISSING_RANGES_SHOWN]]
    hidden = sum(last - first + 1 for first, last in ranges[_MISSING_RANGES_SHOWN:])
    if hidden:
        named.append(f"and {hidden} more")
    one = len(ids) == 1
    return (
        f"{counted(len(ids), kind.noun)} {'has' if one else 'have'} no {kind.action} entry"
        f" ({', '.join(named)}): {'its entry was' if one else 'their entries were'}"
        " deleted from the log"
    )


class ChainChecker:
    """Checks entries one at a time, in id order, so that a long log can be streamed
    through it without being held in memory. :func:`verify_chain` is the one-call form."""

    def __init__(self) -> None:
        self._last: AuditEntry | None = None
        self._checked = 0
        self._problems: list[str] = []

    def add(self, entry: AuditEntry) -> None:
        self._checked += 1
        if self._contents_changed(entry):
            self._problems.append(
                f"row {entry.id} was edited: its contents no longer match its hash"
            )
        last = self._last
        last_id = last.id if last is not None else 0
        if entry.id <= last_id:
            again = "again" if entry.id == last_id else "out of order"
            self._problems.append(
                f"row {entry.id} appears after row {last_id} ({again}): rows were reordered"
            )
            # Keep linking from the highest row seen, so one misplaced row is reported once
            # rather than breaking every link after it.
            return
        if entry.id > last_id + 1:
            missing = _rows(last_id + 1, entry.id - 1)
            verb = "is" if entry.id == last_id + 2 else "are"
            self._problems.append(
                f"{missing} {verb} missing: the log jumps from row {last_id} to row {entry.id}"
                " (deleted)"
            )
        elif last is None and entry.prev_hash != GENESIS:
            self._problems.append(
                f"row {entry.id} should start the chain but its prev_hash is not the genesis"
                " hash: the first rows were deleted and the rest renumbered"
            )
        elif last is not None and entry.prev_hash != last.hash:
            self._problems.append(
                f"row {entry.id} does not follow row {last.id}: its prev_hash differs from"
                f" row {last.id}'s hash, so row {last.id} was rewritten or a row between"
                " them was deleted"
            )
        self._last = entry

    def finish(self, head: tuple[int, str] | None) -> VerifyReport:
        """The report, once every entry has been added. ``head`` is the stored
        (last_id, last_hash), or None when there is none."""
        problems = list(self._problems)
        last = self._last
        end = last.id if last is not None else 0
        if head is None:
            if last is not None:
                problems.append(
                    f"the audit head is missing although the log has rows up to row {end}"
                )
        else:
            head_id, head_hash = head
            where = f"ends at row {end}" if last is not None else "is empty"
            if end < head_id:
                problems.append(
                    f"the head says the log ends at row {head_id} but it {where}:"
                    f" {_were(end + 1, head_id)} cut off the end"
                )
            elif end > head_id:
                problems.append(
                    f"the log goes on past row {head_id}, where the head says it ends, to"
                    f" row {end}: {_were(head_id + 1, end)} added outside the audit log"
                )
            elif last is not None and last.hash != head_hash:
                problems.append(
                    f"row {end}'s hash differs from the one the head recorded for it:"
                    f" row {end} was replaced"
                )
        return VerifyReport(ok=not problems, checked=self._checked, problems=problems)

    @staticmethod
    def _contents_changed(entry: AuditEntry) -> bool:
        try:
            expected = entry_hash(
                entry.id,
                entry.at,
                entry.actor,
                entry.action,
                entry.subject,
                entry.details,
                entry.prev_hash,
            )
        except (TypeError, ValueError):
            # A value no genuine row can hold (a naive time, a non-JSON detail): tampered.
            return True
        return expected != entry.hash


def verify_chain(entries: Iterable[AuditEntry], head: tuple[int, str] | None) -> VerifyReport:
    """Check ``entries`` (expected in id order) against each other and against ``head``."""
    checker = ChainChecker()
    for entry in entries:
        checker.add(entry)
    return checker.finish(head)
