"""The policy file: problems named by file, line, table and field; reload is all or nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bot.policy_changes import policy_changes
from bot.policy_loader import PolicyError, check_policy, load_policy, parse_policy
from bot.settings import EXAMPLE_POLICY
from storage.audit_repo import load_audit
from tests.harness import ConsoleHarness
from tests.policies import CONSOLE_POLICY, ONE_REVIEW_POLICY


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
    assert "no [[review]] takes category AVIATION, ELICIT, EXPERT" in problem
    assert problem.endswith('at any urgency; add a last [[review]] with categories = ["*"]')


def test_red_recipients_must_be_people() -> None:
    text = CONSOLE_POLICY + 'red_recipients = ["console:#everyone"]\n'
    [problem] = problems(text)
    assert "TLP:RED goes only to named people" in problem


def line_of(text: str, wanted: str, occurrence: int = 1) -> int:
    numbers = [n for n, line in enumerate(text.splitlines(), start=1) if line == wanted]
    return numbers[occurrence - 1]


def test_review_or_intake_channel_listed_for_a_partner_is_refused() -> None:
    """A partner reading #review would see every raw tip card: it must never pass."""
    text = CONSOLE_POLICY.replace(
        'channels = ["console:#metro-pd"]',
        'channels = ["console:#metro-pd", "console:#review"]\n'
        'internal_channels = ["console:#tips"]',
    )
    channels = line_of(text, 'channels = ["console:#metro-pd", "console:#review"]')
    internal = line_of(text, 'internal_channels = ["console:#tips"]')
    assert problems(text) == [
        f"center.toml:{channels}: "
        "[[partners]] #1 (id 'metro-pd') channels[1]: 'console:#review' is a review channel "
        "([[review]] #2 'general') and can't also be a partner channel: the partner's people "
        "would read every raw tip there; give the partner a channel of its own",
        f"center.toml:{internal}: "
        "[[partners]] #1 (id 'metro-pd') internal_channels[0]: 'console:#tips' is an intake "
        "channel ([[intake]] #1) and can't also be a partner channel: the partner's people "
        "would read every raw tip there; give the partner a channel of its own",
    ]


PARTNERS_THAT_CLASH = """
[[partners]]
id = "fbi"
name = "FBI Field Office"
sector = "federal"
max_tlp = "AMBER"
regions = ["nort"]
channels = ["console:#fbi"]

[[partners]]
id = "fbi"
name = "FBI Resident Agency"
sector = "federal"
max_tlp = "AMBER"
caveats = ["FOUO"]
channels = ["console:#fbi-ra"]
"""


def test_problems_between_tables_are_all_reported_at_their_lines() -> None:
    text = ONE_REVIEW_POLICY + PARTNERS_THAT_CLASH
    region, second_id = line_of(text, 'regions = ["nort"]'), line_of(text, 'id = "fbi"', 2)
    caveat = line_of(text, 'caveats = ["FOUO"]')
    assert problems(text) == [
        f"center.toml:{region}: [[partners]] #1 (id 'fbi') "
        "regions[0]: region 'nort' is not one of [center] regions (north, south, downtown)",
        f"center.toml:{second_id}: [[partners]] #2 (id 'fbi') id: "
        "partner id 'fbi' is used twice (also by [[partners]] #1); give each partner its own id",
        f"center.toml:{caveat}: [[partners]] #2 (id 'fbi') "
        "caveats[0]: caveat 'FOUO' is not one of this center's caveats (CUI, LES, U//FOUO); "
        "if it is one, add it to caveats = [...] at the top of the file, before the first [table]",
    ]


def test_a_misspelt_key_does_not_hide_problems_between_tables() -> None:
    text = (ONE_REVIEW_POLICY + PARTNERS_THAT_CLASH).replace(
        'channels = ["console:#fbi-ra"]', 'chanels = ["console:#fbi-ra"]'
    )
    misspelt = line_of(text, 'chanels = ["console:#fbi-ra"]')
    found = problems(text)
    assert len(found) == 4
    assert found[3].startswith(
        f"center.toml:{misspelt}: [[partners]] #2 (id 'fbi') chanels: unknown setting"
    )
    assert "region 'nort'" in found[0] and "used twice" in found[1] and "'FOUO'" in found[2]


def test_a_caveat_listed_at_the_top_of_the_file_is_known() -> None:
    text = 'caveats = ["LES", "FOUO"]\n' + ONE_REVIEW_POLICY + PARTNERS_THAT_CLASH
    found = problems(text)
    assert len(found) == 2 and not any("FOUO" in p for p in found)


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


def test_red_recipients_of_a_partner_not_cleared_for_red_are_a_warning() -> None:
    text = CONSOLE_POLICY + 'red_recipients = ["console:chief"]\n'
    at = line_of(text, 'red_recipients = ["console:chief"]')
    policy, warnings = check_policy(text, "center.toml")
    assert [p.red_recipients for p in policy.partners] == [["console:chief"]]
    assert warnings == [
        f"center.toml:{at}: warning: "
        "[[partners]] #1 (id 'metro-pd') red_recipients: max_tlp is AMBER, below RED, so "
        'these people will never receive anything; raise max_tlp to "RED" or remove '
        "red_recipients"
    ]
    cleared = text.replace('max_tlp = "AMBER"', 'max_tlp = "RED"')
    assert check_policy(cleared, "center.toml").warnings == []


def test_the_example_policy_has_nothing_to_warn_about() -> None:
    assert check_policy(EXAMPLE_POLICY.read_text(), "policy.example.toml").warnings == []


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
    # The admin sees what the reload changed; the audit log keeps it with the file's hash.
    assert out[0].endswith("; 1 change:\n    roles.analysts: + console:nina")
    assert any("You hold T-1" in line for line in await h.say("@nina #review !claim T-1"))
    async with db.read() as conn:
        entries = [e for e in await load_audit(conn) if e.action.startswith("policy.")]
    refused, reloaded = entries
    assert refused.action == "policy.reload_refused" and refused.actor == "console:sam"
    assert any("max_tlp" in problem for problem in refused.details["problems"])
    assert reloaded.action == "policy.reloaded"
    assert reloaded.details["changes"] == ["roles.analysts: + console:nina"]
    assert reloaded.details["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_policy_changes_name_each_setting_by_partner_not_position() -> None:
    old = parse_policy(CONSOLE_POLICY, "old.toml")
    new = parse_policy(
        CONSOLE_POLICY.replace('max_tlp = "AMBER"', 'max_tlp = "GREEN"', 1),
        "new.toml",
    )
    assert policy_changes(old, new) == ["partners.metro-pd.max_tlp: AMBER → GREEN"]
    assert policy_changes(old, old) == []
    renamed = parse_policy(CONSOLE_POLICY.replace('id = "metro-pd"', 'id = "metro"'), "r.toml")
    # A partner added or removed is one line, not one per setting.
    assert policy_changes(old, renamed) == ["partners.metro: added", "partners.metro-pd: removed"]


async def test_reload_with_a_setting_that_does_nothing_reloads_and_says_so(
    db, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(CONSOLE_POLICY)
    h = ConsoleHarness(db, policy=load_policy(path), policy_path=path)
    path.write_text(
        CONSOLE_POLICY.replace(
            'analysts = ["console:ana"', 'analysts = ["console:nina", "console:ana"'
        )
        + 'red_recipients = ["console:chief"]\n'
    )
    out = await h.say("@sam #review !reload")
    assert "Policy reloaded" in out[0]
    assert "warning: [[partners]] #1 (id 'metro-pd') red_recipients: max_tlp is AMBER" in out[0]
    assert "red_recipients: max_tlp is AMBER" in caplog.text
    await h.say("@olly #tips !tip Van circling the depot")
    assert any("You hold T-1" in line for line in await h.say("@nina #review !claim T-1"))
