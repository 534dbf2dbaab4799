"""Read a policy file and turn every problem into ``file:line: [table] field: message``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import ValidationError

from bot.policy import Policy

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]+\")\s*=")


class PolicyError(Exception):
    """The policy file can't be used; ``problems`` are ready to show to an operator."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(problems))


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            str(path), [f"{path}: can't read the policy file ({exc.strerror})"]
        ) from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "policy") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, [f"{source}: not valid TOML: {exc}"]) from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(source, text, data, err) for err in exc.errors()]
        raise PolicyError(source, problems) from None


def _describe(source: str, text: str, data: dict, err: dict) -> str:
    loc = tuple(err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown setting (check the spelling against policy.example.toml)"
    elif err["type"] == "missing":
        message = "required setting is missing"
    line = _find_line(text, loc)
    where = _table_name(data, loc)
    location = f"{source}:{line}" if line else source
    return f"{location}: {where}: {message}"


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
