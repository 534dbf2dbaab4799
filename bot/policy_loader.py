"""Read a policy file and turn every problem into ``file:line: [table] field: message``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from bot.policy import Center, Intake, Partner, Policy, Review
from bot.policy_checks import (
    Finding,
    PolicyConflicts,
    Sections,
    conflicts,
    idle_settings,
    sections_of,
)

M = TypeVar("M", bound=BaseModel)

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]+\")\s*=")


class PolicyError(Exception):
    """The policy file can't be used; ``problems`` are ready to show to an operator."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(problems))


class CheckedPolicy(NamedTuple):
    policy: Policy
    # Located like problems; the policy works, but these settings can never take effect.
    warnings: list[str]


def load_policy(path: str | Path) -> Policy:
    return check_policy_file(path).policy


def parse_policy(text: str, source: str = "policy") -> Policy:
    return check_policy(text, source).policy


def check_policy_file(path: str | Path) -> CheckedPolicy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            str(path), [f"{path}: can't read the policy file ({exc.strerror})"]
        ) from exc
    return check_policy(text, str(path))


def check_policy(text: str, source: str = "policy") -> CheckedPolicy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, [f"{source}: not valid TOML: {exc}"]) from exc
    places = _Places(source, text, data)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        found = [Finding(tuple(err["loc"]), _plain_message(err)) for err in exc.errors()]
        # Tables that are fine on their own are still checked against one another, so
        # one misspelt key doesn't hide the rest until the next run.
        found += conflicts(_sections_that_validate(data))
        raise PolicyError(source, places.name_all(found)) from None
    except PolicyConflicts as exc:
        raise PolicyError(source, places.name_all(exc.findings)) from None
    warnings = places.name_all(idle_settings(sections_of(policy)), kind="warning: ")
    return CheckedPolicy(policy, warnings)


def _sections_that_validate(data: dict[str, Any]) -> Sections:
    try:
        caveats = TypeAdapter(list[str]).validate_python(
            data.get(
                "caveats", Policy.model_fields["caveats"].get_default(call_default_factory=True)
            )
        )
    except ValidationError:
        caveats = None
    return Sections(
        center=_valid(Center, data.get("center")),
        caveats=caveats,
        intake=_each_valid(Intake, data.get("intake", [])) or [],
        review=_each_valid(Review, data["review"]) if "review" in data else None,
        partners=_each_valid(Partner, data.get("partners", [])) or [],
    )


def _valid(model: type[M], value: object) -> M | None:
    """The table as its model, reading past misspelt keys (the commonest slip, reported
    already); None if anything else is wrong with it, rather than guess at a value."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors()
    if not isinstance(value, dict) or any(e["type"] != "extra_forbidden" for e in errors):
        return None
    unknown = {e["loc"][0] for e in errors}
    try:
        return model.model_validate({k: v for k, v in value.items() if k not in unknown})
    except ValidationError:
        return None


def _each_valid(model: type[M], value: object) -> list[M | None] | None:
    return [_valid(model, item) for item in value] if isinstance(value, list) else None


def _plain_message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown setting (check the spelling against policy.example.toml)"
    if err["type"] == "missing":
        return "required setting is missing"
    return str(err["msg"]).removeprefix("Value error, ")


class _Places:
    """Turns findings into ``file:line: [table] field: message`` lines, in file order."""

    def __init__(self, source: str, text: str, data: dict[str, Any]) -> None:
        self.source, self.text, self.data = source, text, data

    def name_all(self, findings: list[Finding], kind: str = "") -> list[str]:
        placed = sorted(((_find_line(self.text, f.loc), f) for f in findings), key=_line_or_0)
        return [
            f"{self._file(line)}: {kind}{_table_name(self.data, f.loc)}: {f.message}"
            for line, f in placed
        ]

    def _file(self, line: int | None) -> str:
        return f"{self.source}:{line}" if line else self.source


def _line_or_0(placed: tuple[int | None, Finding]) -> int:
    return placed[0] or 0


def _table_name(data: dict, loc: tuple) -> str:
    """``('partners', 1, 'max_tlp')`` -> ``[[partners]] #2 (id "metro-pd") max_tlp``."""
    if not loc:
        return "policy"
    parts: list[str] = []
    head, rest = loc[0], loc[1:]
    node = data.get(head) if isinstance(data, dict) else None
    if isinstance(node, list) and rest and isinstance(rest[0], int):
        index = rest[0]
        entry = node[index] if index < len(node) else {}
        label = f"[[{head}]] #{index + 1}"
        if isinstance(entry, dict) and ("id" in entry or "name" in entry):
            label += (
                f" ({'id' if 'id' in entry else 'name'} {entry.get('id', entry.get('name'))!r})"
            )
        parts.append(label)
        rest = rest[1:]
    elif isinstance(node, dict):
        parts.append(f"[{head}]")
    else:
        parts.append(str(head))
    fields = [str(p) if not isinstance(p, int) else f"[{p}]" for p in rest]
    if fields:
        parts.append(".".join(fields).replace(".[", "["))
    return " ".join(parts)


def _find_line(text: str, loc: tuple) -> int | None:
    """Best-effort line number for a pydantic error location in the TOML source."""
    if not loc:
        return None
    table = str(loc[0])
    rest = list(loc[1:])
    index = rest.pop(0) if rest and isinstance(rest[0], int) else None
    key = next((str(p) for p in rest if not isinstance(p, int)), None)

    lines = text.splitlines()
    current: str | None = None
    seen: dict[str, int] = {}
    table_line: int | None = None
    in_target = False
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0] if not raw.lstrip().startswith("[") else raw
        header = _HEADER.match(line)
        if header:
            current = header.group(2)
            count = seen.get(current, -1) + 1
            seen[current] = count
            in_target = current == table and (index is None or count == index)
            if in_target:
                table_line = number
                if key is None:
                    return number
            continue
        match = _KEY.match(line)
        if not match:
            continue
        name = match.group(1).strip('"')
        if current is None and name == table:
            return number  # a top-level key such as caveats = [...]
        if in_target and name == key:
            return number
    return table_line
