"""Delegated authority as pure rules: who may decide how much, what a decision must say, and
whether it departs from the system's recommendation."""

from __future__ import annotations

import math

import pytest

from riskcast.config import DeskConfig
from riskcast.errors import AuthorityError, InputError
from riskcast.serving.desk import authority
from riskcast.serving.desk.authority import check_action, check_authority, decision_amount, needed, override

CFG = DeskConfig()
ANY = ("analyst", "manager", "credit_committee")
TOP = ("manager", "credit_committee")


def test_the_configured_authority_is_the_one_these_rules_are_tested_against():
    assert CFG.authority == {"analyst": 50_000.0, "manager": 250_000.0, "credit_committee": 250_000.0}


# -- needed ---------------------------------------------------------------------------------

@pytest.mark.parametrize("amount, approvers, roles", [
    (0.0, 1, ANY),
    (49_999.99, 1, ANY),
    (50_000.0, 1, ANY),            # at the analyst's authority: still the analyst's
    (50_000.01, 1, TOP),
    (120_000.0, 1, TOP),
    (250_000.0, 1, TOP),           # at the highest authority: one person
    (250_000.01, 2, TOP),          # above it: two
    (5_000_000.0, 2, TOP),
])
def test_needed_at_below_and_above_each_authority(amount, approvers, roles):
    need = needed(amount, CFG)
    assert (need.amount, need.approvers, need.roles) == (amount, approvers, roles)


def test_needed_says_what_it_needs_in_words():
    assert needed(60_000.0, CFG).text() == "one manager or credit committee (exposure 60,000.00)"
    two = needed(300_000.0, CFG).text()
    assert two.startswith("two different approvers") and "manager or credit committee" in two


def test_needed_follows_the_configuration():
    cfg = DeskConfig(authority={"analyst": 10_000.0, "manager": 100_000.0, "credit_committee": 1_000_000.0})
    assert needed(100_000.0, cfg).roles == TOP
    assert needed(100_000.01, cfg).roles == ("credit_committee",)
    assert needed(1_000_000.0, cfg).approvers == 1
    high = needed(1_000_000.01, cfg)
    assert (high.approvers, high.roles) == (2, ("credit_committee",))


# -- check_authority --------------------------------------------------------------------------

def test_an_analyst_decides_up_to_50000():
    check_authority("analyst", "ann", needed(50_000.0, CFG), None)


@pytest.mark.parametrize("amount", [50_000.01, 250_000.0, 300_000.0])
def test_an_analyst_is_refused_beyond_50000(amount):
    with pytest.raises(AuthorityError) as e:
        check_authority("analyst", "ann", needed(amount, CFG), None)
    assert e.value.field == "authority" and str(e.value).startswith("authority:")
    assert "analyst may not" in str(e.value)
    assert e.value.http_status == 403


@pytest.mark.parametrize("role", TOP)
def test_a_manager_or_committee_member_decides_250000_alone(role):
    need = needed(250_000.0, CFG)
    assert need.approvers == 1
    check_authority(role, "max", need, None)


def test_above_250000_two_different_approvers_are_needed():
    need = needed(250_000.01, CFG)
    assert need.approvers == 2
    check_authority("manager", "max", need, None)          # the first approval
    check_authority("manager", "mia", need, "max")         # a second, by another person
    check_authority("credit_committee", "cora", need, "max")
    with pytest.raises(AuthorityError) as e:
        check_authority("analyst", "ann", need, "max")      # not of the highest roles
    assert e.value.field == "authority"


@pytest.mark.parametrize("role", TOP)
def test_the_first_approver_cannot_give_the_second_approval(role):
    with pytest.raises(AuthorityError) as e:
        check_authority(role, "max", needed(400_000.0, CFG), "max")
    assert e.value.field == "authority"
    assert "max gave the first approval" in str(e.value)


@pytest.mark.parametrize("role", ["viewer", "admin"])
@pytest.mark.parametrize("amount", [0.0, 10.0, 300_000.0])
def test_a_viewer_or_admin_decides_nothing(role, amount):
    with pytest.raises(AuthorityError) as e:
        check_authority(role, "vic", needed(amount, CFG), None)
    assert e.value.field == "role" and role in str(e.value)


# -- check_action -----------------------------------------------------------------------------

def _ok(**kw):
    args = {"action": "approve", "credit_limit": 10_000.0, "exposure": 8_000.0, "reason_code": "FIN",
            "text": "accounts support it", "cfg": CFG}
    args.update(kw)
    return args


@pytest.mark.parametrize("kw", [
    {},
    {"action": "approve_with_conditions"},
    {"action": "set_limit", "credit_limit": 1_000.0},       # a limit below the exposure decides the orders
    {"action": "set_limit", "credit_limit": 0.0},
    {"action": "decline", "credit_limit": None},
    {"credit_limit": 8_000.0},                              # exactly the exposure
    {"credit_limit": 7_999.996},                            # within half a cent of it
    {"credit_limit": 1e13, "exposure": 1e13},
])
def test_a_well_formed_decision_passes(kw):
    check_action(**_ok(**kw))


@pytest.mark.parametrize("kw, field", [
    ({"action": "approve_all"}, "action"),
    ({"action": ""}, "action"),
    ({"reason_code": "XYZ"}, "reason_code"),
    ({"reason_code": "fin"}, "reason_code"),
    ({"text": ""}, "text"),
    ({"text": "   \n"}, "text"),
    ({"text": "x" * 4001}, "text"),
    ({"credit_limit": None}, "credit_limit"),
    ({"credit_limit": math.nan}, "credit_limit"),
    ({"credit_limit": math.inf}, "credit_limit"),
    ({"credit_limit": -1.0}, "credit_limit"),
    ({"credit_limit": 1.1e13, "exposure": 0.0}, "credit_limit"),
    ({"credit_limit": 7_999.0}, "credit_limit"),             # an approval below the exposure it accepts
    ({"action": "approve_with_conditions", "credit_limit": None}, "credit_limit"),
    ({"action": "set_limit", "credit_limit": None}, "credit_limit"),
])
def test_a_bad_decision_names_its_field(kw, field):
    with pytest.raises(InputError) as e:
        check_action(**_ok(**kw))
    assert e.value.field == field
    assert str(e.value).startswith(f"{field}:")
    assert not isinstance(e.value, AuthorityError)


def test_the_longest_text_allowed_is_4000_characters():
    check_action(**_ok(text="x" * 4000))


# -- the amount a decision accepts --------------------------------------------------------------

@pytest.mark.parametrize("action, limit, exposure, amount", [
    ("approve", 60_000.0, 40_000.0, 60_000.0),       # the limit, when larger
    ("approve", 40_000.0, 45_000.0, 45_000.0),       # the exposure, when larger
    ("approve_with_conditions", 10.0, 20.0, 20.0),
    ("set_limit", 30_000.0, 300_000.0, 30_000.0),    # a limit accepts only itself
    ("decline", 900_000.0, 900_000.0, 0.0),
    ("approve", None, 70.0, 70.0),
])
def test_decision_amount(action, limit, exposure, amount):
    assert decision_amount(action, limit, exposure) == amount


# -- override -----------------------------------------------------------------------------------

@pytest.mark.parametrize("action, limit, exposure, recommended, expected", [
    ("approve", 60_000.0, 40_000.0, 50_000.0, "up"),
    ("approve", 40_000.0, 40_000.0, 50_000.0, "down"),
    ("approve", 50_000.0, 40_000.0, 50_000.0, "none"),
    ("approve", 50_000.004, 40_000.0, 50_000.0, "none"),  # within half a cent: the same limit
    ("set_limit", 49_999.99, 40_000.0, 50_000.0, "down"),
    ("approve_with_conditions", 70_000.0, 70_000.0, None, "up"),   # no recommendation: 0
    ("approve", 70_000.0, 70_000.0, math.nan, "up"),               # NaN: no recommendation either
    ("set_limit", 0.0, 0.0, None, "none"),
    # a decline refuses credit: against a system that would have covered the exposure it is "down"
    ("decline", None, 40_000.0, 50_000.0, "down"),
    ("decline", None, 50_000.0, 50_000.0, "down"),
    # ... against one whose limit did not cover it, the decline agrees with the system
    ("decline", None, 60_000.0, 50_000.0, "none"),
    ("decline", None, 60_000.0, None, "none"),
    ("decline", None, 0.0, 50_000.0, "none"),                      # nothing asked, nothing refused
])
def test_override(action, limit, exposure, recommended, expected):
    assert override(action, limit, exposure, recommended) == expected


def test_the_actions_that_write_a_limit():
    assert set(authority.LIMIT_ACTIONS) == {"approve", "approve_with_conditions", "set_limit"}
    assert set(authority.ACTIONS) == set(authority.LIMIT_ACTIONS) | {"decline"}
    assert authority.DECIDING == ANY
