"""Policies for tests: console-only, so nothing waits for a platform that isn't running."""

from __future__ import annotations

from bot.policy import Policy
from bot.policy_loader import parse_policy

CONSOLE_POLICY = """
[center]
name = "Test Fusion Center"
timezone = "America/New_York"
regions = ["north", "south", "downtown"]

[roles]
officers = ["*"]
analysts = ["console:ana", "console:ali", "console:olga"]
supervisors = ["console:sam"]
admins = ["console:sam"]

[sla]
immediate = 15
priority = 60
routine = 1440

[[intake]]
channels = ["console:#tips"]

[[review]]
name = "cyber"
channels = ["console:#cyber"]
categories = ["CYBER"]

[[review]]
name = "general"
channels = ["console:#review", "console:#review-night"]
categories = ["*"]

[[partners]]
id = "metro-pd"
name = "Metro Police Department"
sector = "local"
max_tlp = "AMBER"
caveats = ["LES"]
channels = ["console:#metro-pd"]
"""


# One console review channel for every category, no partners: a base that a test or a
# benchmark adds its own partners to.
ONE_REVIEW_POLICY = """
[center]
name = "Test Fusion Center"
timezone = "America/New_York"
regions = ["north", "south", "downtown"]

[roles]
officers = ["*"]
analysts = ["console:ana"]
supervisors = ["console:sam"]
admins = ["console:sam"]

[[intake]]
channels = ["console:#tips"]

[[review]]
name = "general"
channels = ["console:#review"]
categories = ["*"]
"""


def console_policy(text: str = CONSOLE_POLICY) -> Policy:
    return parse_policy(text, "test-policy.toml")
