"""One `fusionbot run` process on Matrix and Slack at once: a tip filed by an officer in
a Matrix room is triaged by an analyst in Slack, and its alert reaches partners on both."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from tests.fakes.slack_web_api import FakeSlackWebAPI
from tests.matrix_server import SynapseServer
from tests.matrix_server.fixtures import synapse  # noqa: F401
from tests.matrix_server.people import from_user, person
from tests.test_matrix_flow import replies_to
from tests.test_slack_flow import fusionbot_run, texts, until

POLICY = """
[center]
name = "Test Fusion Center"
timezone = "America/New_York"
regions = ["north", "south"]

[roles]
officers = ["*"]
analysts = ["slack:UANA"]
supervisors = ["slack:UANA"]

[[intake]]
channels = ["matrix:{intake}", "slack:C0TIPS"]

[[review]]
name = "general"
channels = ["slack:C0REVIEW"]

[[partners]]
id = "metro-pd"
name = "Metro Police Department"
sector = "local"
max_tlp = "AMBER"
channels = ["slack:C0METRO", "matrix:{metro}"]

[[partners]]
id = "transit"
name = "Regional Transit Authority"
sector = "private"
max_tlp = "CLEAR"
channels = ["matrix:{transit}"]
"""


async def test_tip_from_matrix_triaged_in_slack_alert_on_both(
    synapse: SynapseServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    password = secrets.token_urlsafe(12)
    bot_user = (
        await asyncio.to_thread(synapse.register, f"fusionbot-{secrets.token_hex(3)}", password)
    ).user_id
    officer, partner, center = [await person(synapse, n) for n in ("olly", "pat", "center")]
    try:
        rooms = {
            "intake": await center.create_room("tips", [officer.user_id, bot_user]),
            "metro": await center.create_room("metro", [partner.user_id, bot_user]),
            "transit": await center.create_room("transit", [bot_user]),
        }
        await officer.join(rooms["intake"])
        await partner.join(rooms["metro"])
        matrix_env = {
            "MATRIX_HOMESERVER": synapse.url,
            "MATRIX_USER_ID": bot_user,
            "MATRIX_PASSWORD": password,
        }
        async with (
            FakeSlackWebAPI() as fake,
            fusionbot_run(tmp_path, fake, POLICY.format(**rooms), env=matrix_env) as (
                slack,
                _,
                log,
            ),
        ):
            asked = await officer.say(
                rooms["intake"], "!tip Drone filming the water plant | category: photo"
            )
            receipt = await officer.wait_for(replies_to(asked), within=60)
            assert receipt.body.startswith("Received T-1")

            card = await until(lambda: fake.messages("C0REVIEW"), 30)
            assert "Drone filming the water plant" in texts(card)

            await slack.command(
                "/fusion",
                "claim T-1",
                user="UANA",
                channel="C0REVIEW",
                trigger_id=fake.issue_trigger_id(),
            )
            await until(lambda: "CLAIMED" in texts(fake.messages("C0REVIEW")))
            await slack.command(
                "/fusion",
                "approve T-1 tlp:green now confirm",
                user="UANA",
                channel="C0REVIEW",
                trigger_id=fake.issue_trigger_id(),
            )

            on_slack = await until(lambda: fake.messages("C0METRO"), 30)
            assert "TLP:GREEN" in texts(on_slack) and "A-1" in texts(on_slack)
            on_matrix = await partner.wait_for(
                from_user(bot_user, room_id=rooms["metro"], contains="A-1"), within=60
            )
            assert on_matrix.body.splitlines()[0] == "TLP:GREEN"
            # The officer on Matrix hears that the tip became an alert.
            await officer.wait_for(from_user(bot_user, contains="A-1"), within=60)
            assert "Traceback" not in log.read_text()
        # Transit is cleared for TLP:CLEAR only: its Matrix room got nothing.
        await center.sync()
        assert center.messages_in(rooms["transit"], sender=bot_user) == []
    finally:
        for somebody in (officer, partner, center):
            await somebody.close()
