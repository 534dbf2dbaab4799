"""Reactions as commands, and which rooms and servers the bot deals with (no server)."""

from __future__ import annotations

from adapters.matrix.reactions import reaction_command
from adapters.matrix.rooms import allowed_servers, may_command, policy_rooms
from bot.messages import Button, Message
from bot.policy_loader import parse_policy

CARD = Message(text="card", buttons=[Button(label="Claim", command="claim T-4")])
PREVIEW = Message(
    text="who will see this",
    buttons=[Button(label="Confirm and send", command="approve T-4 tlp:amber to:metro-pd confirm")],
)
ALERT = Message(text="alert", buttons=[Button(label="Useful", command="feedback A-2 useful")])


def test_reactions_on_a_card() -> None:
    assert reaction_command("✋", CARD, "card:4") == "!claim T-4"
    assert reaction_command("✋\ufe0f", CARD, "card:4") == "!claim T-4"
    assert reaction_command("✋🏽", CARD, "card:4") == "!claim T-4"  # a skin tone
    assert reaction_command("✅", CARD, "card:4") == "!approve T-4"
    assert reaction_command("❌", CARD, "card:4") == "!reject T-4"
    assert reaction_command("👍", CARD, "card:4") is None
    assert reaction_command("👀", CARD, "card:4") is None  # people talking


def test_approve_on_the_preview_confirms_exactly_what_was_previewed() -> None:
    assert reaction_command("✅", PREVIEW, None) == "!approve T-4 tlp:amber to:metro-pd confirm"
    assert reaction_command("✋", PREVIEW, None) is None


def test_feedback_on_alerts_and_digests() -> None:
    assert reaction_command("👍", ALERT, "alert:2") == "!feedback A-2 useful"
    assert reaction_command("👎", ALERT, "alert:2") == "!feedback A-2 not-useful"
    assert reaction_command("✋", ALERT, "alert:2") is None
    digest = Message(text="3 alerts")
    assert reaction_command("👍", digest, "digest:metro-pd:2026-11-25") == "!feedback"
    assert reaction_command("👍", Message(text="hello"), None) is None


POLICY = """
[center]
name = "C"
timezone = "America/New_York"
[roles]
officers = ["*"]
analysts = ["matrix:@ana:center.example", "slack:UANA"]
[[intake]]
channels = ["matrix:!tips", "matrix:#tips:agency.example"]
[[review]]
name = "general"
channels = ["matrix:!review"]
[[partners]]
id = "metro-pd"
name = "Metro"
sector = "local"
max_tlp = "RED"
channels = ["matrix:!metro", "slack:C0METRO"]
red_recipients = ["matrix:@chief:metro.example"]
"""


def test_policy_rooms_and_default_allowed_servers() -> None:
    policy = parse_policy(POLICY, "p.toml")
    assert policy_rooms(policy) == ["!tips", "#tips:agency.example", "!review", "!metro"]
    assert allowed_servers(policy, "@bot:center.example") == {
        "center.example",
        "agency.example",
        "metro.example",
    }
    assert may_command(policy, "@bot:center.example", "@olly:agency.example")
    assert not may_command(policy, "@bot:center.example", "@eve:evil.example")


def test_allowed_servers_from_the_policy_replace_the_default() -> None:
    policy = parse_policy(POLICY + '[matrix]\nallowed_servers = ["only.example"]\n', "p.toml")
    assert allowed_servers(policy, "@bot:center.example") == {"only.example"}
    assert not may_command(policy, "@bot:center.example", "@ana:center.example")


def test_approve_on_a_titled_preview_sends_its_confirm_command() -> None:
    """The preview's command puts confirm before title: (a title may end in any word)."""
    command = 'approve T-4 tlp:amber to:metro-pd now confirm title: "Please confirm"'
    preview = Message(text="who", buttons=[Button(label="Confirm and send", command=command)])
    assert reaction_command("✅", preview, None) == "!" + command
