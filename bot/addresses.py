"""People and channels are addressed ``platform:id`` on every platform."""

from __future__ import annotations

PLATFORMS = ("console", "slack", "matrix")


def split_address(address: str) -> tuple[str, str]:
    """``matrix:!room:example.org`` -> (``matrix``, ``!room:example.org``).

    Only the first colon separates: Matrix ids contain colons and are opaque.
    """
    platform, sep, rest = address.partition(":")
    if not sep or not rest:
        raise ValueError(f"{address!r} is not an address of the form platform:id")
    return platform, rest


def validate_address(address: str) -> str:
    platform, rest = split_address(address)
    if platform not in PLATFORMS:
        raise ValueError(
            f"{address!r}: unknown platform {platform!r} (use one of {', '.join(PLATFORMS)})"
        )
    if any(ch.isspace() for ch in rest):
        raise ValueError(f"{address!r} must not contain spaces")
    return address


def platform_of(address: str) -> str:
    return split_address(address)[0]


def spell(address: str, verb: str) -> str:
    """How the person (or the people in the channel) at ``address`` type a command: Slack
    has slash commands (``/tip``, ``/fusion claim``), and takes ``!claim`` only in a direct
    message with the bot; elsewhere ``!claim``."""
    if platform_of(address) == "slack":
        return "/tip" if verb == "tip" else f"/fusion {verb}"
    return f"!{verb}"


def is_channel(address: str) -> bool:
    """A channel (as opposed to a person) on the given platform."""
    platform, rest = split_address(address)
    if platform == "console":
        return rest.startswith("#")
    if platform == "matrix":
        return rest.startswith("!") or rest.startswith("#")
    # Slack: C… public, G… private, D… DM channels, or team_id/channel_id for other workspaces.
    return "/" in rest or rest[:1] in ("C", "G", "D")
