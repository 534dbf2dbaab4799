"""Which Matrix rooms and servers the policy lets the bot deal with (no I/O here).

The bot joins only the rooms the policy names (plus direct chats people open with it) and
takes commands only from the homeservers the policy allows: ``[matrix] allowed_servers``,
or by default the bot's own server and the servers of every person and room alias the
policy names.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.addresses import split_address
from bot.policy import Policy


def server_of(matrix_id: str) -> str:
    """``@ana:example.org`` -> ``example.org``. Only user ids and aliases carry a server;
    room ids are opaque and are never split."""
    return matrix_id.partition(":")[2]


def _matrix_ids(addresses: Iterable[str]) -> list[str]:
    found = []
    for address in addresses:
        if address == "*":
            continue
        platform, rest = split_address(address)
        if platform == "matrix":
            found.append(rest)
    return found


def policy_rooms(policy: Policy) -> list[str]:
    """Every room the policy names (``!id`` or ``#alias:server``), in policy order."""
    channels: list[str] = []
    for intake in policy.intake:
        channels += intake.channels
    for review in policy.review:
        channels += review.channels
    for partner in policy.partners:
        channels += partner.channels + partner.internal_channels
    return list(dict.fromkeys(_matrix_ids(channels)))


def policy_people(policy: Policy) -> list[str]:
    roles = policy.roles
    people = [*roles.officers, *roles.analysts, *roles.supervisors, *roles.admins]
    for partner in policy.partners:
        people += partner.red_recipients
    return [p for p in _matrix_ids(people) if p.startswith("@")]


def allowed_servers(policy: Policy, bot_user_id: str) -> frozenset[str]:
    if policy.matrix.allowed_servers is not None:
        return frozenset(policy.matrix.allowed_servers)
    named = [*policy_people(policy), *(r for r in policy_rooms(policy) if r.startswith("#"))]
    return frozenset({server_of(bot_user_id), *(server_of(i) for i in named)} - {""})


def may_command(policy: Policy, bot_user_id: str, sender: str) -> bool:
    return server_of(sender) in allowed_servers(policy, bot_user_id)
