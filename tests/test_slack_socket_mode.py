"""Socket Mode: with SLACK_APP_TOKEN the real `fusionbot run` opens an outbound WebSocket
(no public URL) and serves requests that arrive on it, acked by envelope."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.fakes.slack_web_api import DEFAULT_APP_TOKEN, FakeSlackWebAPI
from tests.test_slack_flow import bot_environment, texts, until


async def test_socket_mode_files_a_tip_and_acks_its_envelope(tmp_path: Path) -> None:
    async with FakeSlackWebAPI() as fake:
        env = bot_environment(tmp_path, fake, SLACK_APP_TOKEN=DEFAULT_APP_TOKEN)
        log = tmp_path / "bot.log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=tmp_path,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        try:
            await until(lambda: fake.socket_connected or process.returncode is not None, 30)
            assert process.returncode is None, log.read_text()
            envelope = await fake.send_envelope(
                "slash_commands",
                {
                    "token": "legacy",
                    "team_id": "T0DEFAULT",
                    "team_domain": "test",
                    "channel_id": "C0TIPS",
                    "channel_name": "tips",
                    "user_id": "UOLLY",
                    "user_name": "olly",
                    "command": "/tip",
                    "text": "Drone over the stadium | category: aviation | urgency: immediate",
                    "api_app_id": "A0FAKEAPP01",
                    "response_url": "https://hooks.slack.invalid/commands/1",
                    "trigger_id": fake.issue_trigger_id(),
                },
            )
            await until(lambda: any(r.get("envelope_id") == envelope for r in fake.socket_replies))
            card = await until(lambda: fake.messages("C0REVIEW"))
            assert "T-1 · NEW · immediate · AVIATION" in texts(card)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 20)
        assert process.returncode == 0, log.read_text()
