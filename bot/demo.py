"""``fusionbot demo``: the README tour, played through the console adapter on a throw-away
database with a clock the script moves, so a digest can fire in a second."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.console.adapter import parse_line
from adapters.console.sender import ConsoleSender
from bot.app import build
from bot.clock import ManualClock
from bot.policy_loader import load_policy
from bot.settings import EXAMPLE_POLICY, Settings

# "# …" lines narrate; "~ <local time>" moves the clock there and runs what fell due.
SCRIPT = """\
# Tuesday 09:12. Officer Olly, on patrol, files a tip from the car.
@olly #tips !tip Man photographing the substation fence, noting the gate schedule | category: photo | location: 5th & Main substation | region: downtown | urgency: priority
~ 2026-03-03T09:20
# Analyst Ana claims it. Photography is Part B behaviour: she needs more facts first.
@ana #review !claim T-1
@ana #review !ask T-1 Did he try the gate or talk to staff?
@olly @bot !reply T-1 He asked a worker when the guard changes shifts, then left in a grey van.
# Ana checks who would see it at TLP:AMBER with the LES caveat. Nothing is sent yet.
@ana #review !approve T-1 tlp:amber caveat:LES to:metro-pd,transit,state-police title: Substation surveillance at 5th & Main
# Transit is left out (cleared only to GREEN). She confirms: Metro PD gets it now,
# the State Police in their 07:00 digest.
@ana #review !approve T-1 tlp:amber caveat:LES to:metro-pd,transit,state-police confirm title: Substation surveillance at 5th & Main
@ana #review !alert A-1
# Wednesday 07:00: the State Police digest goes out.
~ 2026-03-04T07:00
# A Metro PD detective answers; the officer who filed the tip hears about it.
@pat #metro-pd !feedback A-1 useful Matches two reports from our night shift
@olly @bot !status T-1
"""

START = "2026-03-03T09:12"


async def play(write: Callable[[str], None], script: str = SCRIPT) -> None:
    policy = load_policy(EXAMPLE_POLICY)
    tz = policy.center.tz
    clock = ManualClock(_local(START, tz))
    with tempfile.TemporaryDirectory(prefix="fusionbot-demo-") as tmp:
        settings = Settings.from_environ({"FUSIONBOT_DATA_DIR": str(Path(tmp))})
        bot = build(settings, policy=policy, clock=clock, senders={"console": ConsoleSender(write)})
        await bot.start(deliver=False, schedule=False)
        try:
            narrating = False
            for line in script.splitlines():
                if not line.strip():
                    continue
                if line.startswith("#"):
                    # A blank line before each paragraph of narration, not each line.
                    write(line if narrating else f"\n{line}")
                    narrating = True
                    continue
                narrating = False
                if line.startswith("~"):
                    clock.set(_local(line[1:].strip(), tz))
                    write(f"~ the clock moves to {line[1:].strip()} ({tz.key})")
                    await bot.run_due_jobs()
                else:
                    write(f"> {line}")
                    command, _ = parse_line(line)
                    await bot.handle(command)
                await bot.drain()
        finally:
            await bot.stop()


def _local(text: str, tz: ZoneInfo) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)
