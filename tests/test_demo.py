"""`fusionbot demo` is the README tour: it must keep telling the whole story."""

from __future__ import annotations

from bot.demo import play
from tests.test_cli import fusionbot


async def test_demo_transcript_tells_the_whole_story() -> None:
    lines: list[str] = []
    await play(lines.append)
    transcript = "\n".join(lines)
    starts = [line.split(" ", 1)[0] for line in lines]

    assert "@olly Received T-1" in transcript
    assert "@olly console:ana asks about your tip T-1" in transcript
    assert "A (console:olly): He asked a worker" in transcript
    # The preview names who is left out and why; transit never gets a line.
    assert "Not sent to: transit — max TLP:GREEN is below TLP:AMBER" in transcript
    assert "#transit" not in starts
    assert "#metro-pd [TLP:AMBER // LES]" in transcript
    # The State Police copy waits for the 07:00 digest, then arrives once per channel.
    digest_index = transcript.index("~ the clock moves to 2026-03-04T07:00")
    assert "#state-police" not in starts[: starts.index("~")]
    assert transcript.count("Digest for State Police Intelligence Unit · 2026-03-04 07:00 EST") == 2
    assert transcript.index("Digest for State Police") > digest_index
    # Feedback closes the loop with the officer.
    assert (
        "@olly A partner (Metro Police Department) found your tip T-1 (alert A-1) useful"
        in transcript
    )


def test_demo_command_prints_the_transcript(tmp_path) -> None:
    result = fusionbot("demo", cwd=tmp_path, env={"FUSIONBOT_LOG_LEVEL": "WARNING"})
    assert result.returncode == 0, result.stderr
    assert "Digest for State Police Intelligence Unit" in result.stdout
    assert not list(tmp_path.iterdir())  # a throw-away database, nothing left behind
