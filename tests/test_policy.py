"""The policy file: problems named by file, line, table and field; reload is all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.policy_loader import PolicyError, load_policy, parse_policy
from bot.settings import EXAMPLE_POLICY
from tests.harness import ConsoleHarness
from tests.policies import CONSOLE_POLICY


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as error:
        parse_policy(text, "center.toml")
    return error.value.problems


def test_example_policy_is_valid() -> None:
    policy = load_policy(EXAMPLE_POLICY)
    assert policy.center.name == "Metro Fusion Center"
    assert {p.id for p in policy.partners} >= {"metro-pd", "transit"}


def test_wrong_value_names_line_table_and_field() -> None:
    text = CONSOLE_POLICY.replace('max_tlp = "AMBER"', 'max_tlp = "PURPLE"')
    line = text.splitlines().index('max_tlp = "PURPLE"') + 1
    [problem] = problems(text)
    assert problem.startswith(f"center.toml:{line}: [[partners]] #1 (id 'metro-pd') max_tlp:")
    assert "use one of clear, green, amber, amber+strict, red" in problem


def test_misspelt_setting_is_caught() -> None:
    text = CONSOLE_POLICY.replace('sector = "local"', 'sectr = "local"')
    found = problems(text)
    assert any("[[partners]] #1 (id 'metro-pd') sectr: unknown setting" in p for p in found)
    assert any(
        "[[partners]] #1 (id 'metro-pd') sector: required setting is missing" in p for p in found
    )


def test_toml_syntax_error_names_the_line() -> None:
    [problem] = problems(CONSOLE_POLICY.replace('name = "Test Fusion Center"', 'name = "Test'))
    assert problem.startswith("center.toml: not valid TOML") and "line" in problem


def test_several_problems_are_all_reported() -> None:
    text = CONSOLE_POLICY.replace('timezone = "America/New_York"', 'timezone = "Mars/Olympus"')
    text = text.replace('categories = ["CYBER"]', 'categories = ["HACKING"]')
    found = problems(text)
    assert len(found) == 2
    assert any("[center] timezone: unknown time zone 'Mars/Olympus'" in p for p in found)
    assert any(
        "[[review]] #1 (name 'cyber') categories[0]: unknown category 'HACKING'" in p for p in found
    )


def test_every_category_must_have_a_review_route() -> None:
    text = CONSOLE_POLICY.replace('categories = ["*"]\n', 'categories = ["PHOTO"]\n', 1)
    [problem] = problems(text)
    assert "no [[review]] takes category" in problem


def test_red_recipients_must_be_people() -> None:
    text = CONSOLE_POLICY + 'red_recipients = ["console:#everyone"]\n'
    [problem] = problems(text)
    assert "TLP:RED goes only to named people" in problem


def line_of(text: str, wanted: str, occurrence: int = 1) -> int:
    numbers = [n for n, line in enumerate(text.splitlines(), start=1) if line == wanted]
    return numbers[occurrence - 1]


def test_a_partner_must_state_its_clearance() -> None:
    text = CONSOLE_POLICY.replace('max_tlp = "AMBER"\n', "")
    assert problems(text) == [
        f"center.toml:{line_of(text, '[[partners]]')}: [[partners]] #1 (id 'metro-pd') "
        "max_tlp: required setting is missing"
    ]


def test_tlp_white_is_refused_with_its_tlp_2_name() -> None:
    [problem] = problems(CONSOLE_POLICY.replace('max_tlp = "AMBER"', 'max_tlp = "WHITE"'))
    assert problem.endswith(
        "max_tlp: 'WHITE' is not a TLP 2.0 label; use one of clear, green, amber, amber+strict, "
        "red (TLP:WHITE became TLP:CLEAR in TLP 2.0)"
    )


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="can't read the policy file"):
        load_policy(tmp_path / "missing.toml")


async def test_reload_swaps_atomically_and_keeps_old_policy_when_broken(db, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(CONSOLE_POLICY)
    h = ConsoleHarness(db, policy=load_policy(path), policy_path=path)
    await h.say("@olly #tips !tip Van circling the depot")
    assert "Only the center's analysts" in (await h.say("@nina #review !claim T-1"))[0]

    path.write_text(
        CONSOLE_POLICY.replace(
            'analysts = ["console:ana"', 'analysts = ["console:nina", "console:ana"'
        ).replace('max_tlp = "AMBER"', 'max_tlp = "BLUE"')
    )
    out = await h.say("@sam #review !reload")
    assert "old policy stays in force" in out[0] and "max_tlp" in out[0]
    assert "Only the center's analysts" in (await h.say("@nina #review !claim T-1"))[0]

    path.write_text(
        CONSOLE_POLICY.replace(
            'analysts = ["console:ana"', 'analysts = ["console:nina", "console:ana"'
        )
    )
    out = await h.say("@sam #review !reload")
    assert "Policy reloaded" in out[0]
    assert any("You hold T-1" in line for line in await h.say("@nina #review !claim T-1"))
