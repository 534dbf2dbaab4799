"""What a policy reload changes, in lines an auditor can read: who is cleared for what is
the reason a partner got (or didn't get) an alert, so the audit log keeps each change."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from bot.policy import Policy

Flat = dict[str, Any]


def policy_changes(old: Policy, new: Policy) -> list[str]:
    """``partners.metro-pd.max_tlp: AMBER → GREEN``, ``roles.analysts: + console:bob``,
    ``partners.fbi: added`` … in a stable order; empty when nothing changed."""
    before, after = _flatten(old), _flatten(new)
    lines: list[str] = []
    for key in sorted(before.keys() | after.keys()):
        was, now = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if was == now:
            continue
        if was is _ABSENT:
            lines.append(f"{key}: added" if key.count(".") == 1 else f"{key}: {_shown(now)}")
        elif now is _ABSENT:
            lines.append(f"{key}: removed")
        elif isinstance(was, frozenset) and isinstance(now, frozenset):
            moved = [f"+ {v}" for v in sorted(now - was)] + [f"− {v}" for v in sorted(was - now)]
            lines.append(f"{key}: {', '.join(moved)}")
        else:
            lines.append(f"{key}: {_shown(was)} → {_shown(now)}")
    return _collapse(lines)


def file_digest(path: Path) -> str | None:
    """The SHA-256 of the file as read now, so the audit entry names the exact version."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


_ABSENT = object()


def _flatten(policy: Policy) -> Flat:
    """Dotted paths to values; partners keyed by id and review routes by name (not by
    position, so reordering the file changes nothing); lists of plain values as sets."""
    data = policy.model_dump(mode="json")
    flat: Flat = {}
    for section, value in data.items():
        if section == "partners":
            for partner in value:
                flat[f"partners.{partner['id']}"] = True
                _walk(flat, f"partners.{partner['id']}", partner)
        elif section == "review":
            for route in value:
                flat[f"review.{route['name']}"] = True
                _walk(flat, f"review.{route['name']}", route)
        else:
            _walk(flat, section, value)
    return flat


def _walk(flat: Flat, path: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _walk(flat, f"{path}.{key}", inner)
    elif isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        flat[path] = frozenset(str(v) for v in value)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            _walk(flat, f"{path}[{i}]", inner)
    else:
        flat[path] = value


def _collapse(lines: list[str]) -> list[str]:
    """A partner or route added or removed is one line, not one per setting."""
    whole = [line.split(":", 1)[0] for line in lines if line.endswith((": added", ": removed"))]
    whole = [w for w in whole if w.count(".") == 1]
    return [line for line in lines if not any(line.startswith(w + ".") for w in whole)]


def _shown(value: Any) -> str:
    if isinstance(value, frozenset):
        return "[" + ", ".join(sorted(value)) + "]"
    return str(value)
