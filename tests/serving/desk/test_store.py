"""The desk's store on SQLite and on PostgreSQL: users and hashed keys, cases opened and joined
by referrals, decisions under delegated authority, the approved-limit master and its reviews,
the queue, and the append-only trail."""

from __future__ import annotations

import hashlib
import math
from datetime import date

import pytest
import sqlalchemy as sa

from riskcast.errors import AuthError, AuthorityError, InputError, NotFoundError, StaleCaseError
from riskcast.serving.desk import orders, schema
from riskcast.serving.desk.store import Referral, _final_orders, add_months

from .helpers import REASON, TEXT, TODAY, counts, referral, rows


def _decide(desk, case_id, user, action="approve", credit_limit=None, *, seen=None, terms_days=60, **kw):
    seen = desk.case(case_id).seq if seen is None else seen
    kw.setdefault("reason_code", REASON)
    kw.setdefault("text", TEXT)
    if action == "approve_with_conditions":
        kw.setdefault("conditions", ["personal guarantee of the director"])
    return desk.decide(case_id, user, seen, action, credit_limit=credit_limit, terms_days=terms_days, **kw)


def _open(desk, customer_id="C1", amount=20_000.0, open_receivables=0.0, request_id=None, **facts):
    rid = request_id or f"{customer_id}-o1"
    return desk.refer([referral(customer_id, rid, amount, open_receivables, **facts)])[rid]


def _events(desk, case_id):
    return [e for e in rows(desk, "desk_case_events") if e["case_id"] == case_id]


# -- users and keys ---------------------------------------------------------------------------

def test_a_new_users_key_authenticates_to_them(desk):
    key = desk.add_user("ann", "Ann Analyst", "analyst", by="ada")
    assert key.startswith("rk_") and len(key) > 30
    user = desk.authenticate(key)
    assert (user.user_id, user.name, user.role, user.active) == ("ann", "Ann Analyst", "analyst", True)
    other = desk.add_user("max", "Max Manager", "manager", by="ada")
    assert other != key and desk.authenticate(other).user_id == "max"


def test_a_key_is_stored_only_as_its_sha256(desk):
    key = desk.add_user("ann", "Ann Analyst", "analyst", by="ada")
    second = desk.new_key("ann", "laptop", by="ada")
    desk.revoke_key(second, by="ada")
    digest = hashlib.sha256(key.encode()).hexdigest()
    secret = key[len("rk_"):]
    everything = []
    for table in schema.APPEND_ONLY:
        for row in rows(desk, table):
            everything.extend(str(v) for v in row.values())
    text = "\n".join(everything)
    assert everything, "the desk's tables hold the user, the keys and the trail"
    for k in (key, second):
        assert k not in text and k[len("rk_"):] not in text
    assert secret[:16] not in text
    assert digest in {r["key_hash"] for r in rows(desk, "desk_keys")}
    assert hashlib.sha256(second.encode()).hexdigest() in {r["key_hash"] for r in rows(desk, "desk_key_revocations")}


def test_a_revoked_key_is_refused_and_the_users_other_keys_still_work(desk):
    first = desk.add_user("ann", "Ann", "analyst", by="ada")
    second = desk.new_key("ann", "laptop", by="ada")
    third = desk.new_key("ann", "phone", by="ada")
    assert desk.revoke_key(first, by="ada") == hashlib.sha256(first.encode()).hexdigest()[:12]
    with pytest.raises(AuthError) as e:
        desk.authenticate(first)
    assert e.value.field == "key" and e.value.http_status == 401
    # the prefix of the hash, as the list of users shows it, revokes too
    listed = {k["label"]: k for k in desk.users()[0]["keys"]}
    desk.revoke_key(listed["laptop"]["key"], by="ada")
    with pytest.raises(AuthError):
        desk.authenticate(second)
    assert desk.authenticate(third).user_id == "ann"
    keys = {k["label"]: k["revoked"] for k in desk.users()[0]["keys"]}
    assert keys == {"first key": True, "laptop": True, "phone": False}


def test_revoking_an_unknown_key_is_not_found(desk):
    desk.add_user("ann", "Ann", "analyst", by="ada")
    with pytest.raises(NotFoundError):
        desk.revoke_key("rk_not-a-key", by="ada")


def test_a_deactivated_users_keys_stop_working(desk):
    key = desk.add_user("ann", "Ann", "analyst", by="ada")
    spare = desk.new_key("ann", "spare", by="ada")
    user = desk.set_role("ann", None, by="ada", active=False)
    assert (user.role, user.active) == ("analyst", False)
    for k in (key, spare):
        with pytest.raises(AuthError):
            desk.authenticate(k)


def test_a_new_role_takes_effect_at_the_next_sign_in(desk):
    key = desk.add_user("ann", "Ann", "analyst", by="ada")
    desk.set_role("ann", "manager", by="ada")
    user = desk.authenticate(key)
    assert (user.role, user.active) == ("manager", True)
    versions = [(r["version"], r["role"]) for r in rows(desk, "desk_users") if r["user_id"] == "ann"]
    assert versions == [(1, "analyst"), (2, "manager")]   # a new version, the old one kept


@pytest.mark.parametrize("key", [None, "", "rk_unknown", "not even a key"])
def test_an_unknown_key_is_refused(desk, key):
    desk.add_user("ann", "Ann", "analyst", by="ada")
    with pytest.raises(AuthError):
        desk.authenticate(key)


def test_a_user_id_is_added_once_and_roles_are_checked(desk):
    desk.add_user("ann", "Ann", "analyst", by="ada")
    before = counts(desk)
    with pytest.raises(InputError) as e:
        desk.add_user("ann", "Ann again", "manager", by="ada")
    assert e.value.field == "user_id"
    with pytest.raises(InputError) as e:
        desk.add_user("bob", "Bob", "superuser", by="ada")
    assert e.value.field == "role"
    with pytest.raises(NotFoundError):
        desk.set_role("nobody", "manager", by="ada")
    assert counts(desk) == before


# -- referrals --------------------------------------------------------------------------------

def test_a_referral_opens_a_case(desk):
    ids = desk.refer([referral("C1", "o1", 20_000.0, 5_000.0)])
    case = desk.case(ids["o1"])
    assert (case.customer_id, case.kind, case.state, case.seq) == ("C1", "referral", "open", 1)
    assert [o["request_id"] for o in case.orders] == ["o1"]
    assert case.exposure == 25_000.0
    assert desk.case_of_order("o1") == case.case_id
    assert [r["customer_seq"] for r in rows(desk, "desk_cases")] == [1]


def test_the_same_order_referred_again_changes_nothing(desk):
    cid = _open(desk, "C1", request_id="o1")
    before = counts(desk)
    assert desk.refer([referral("C1", "o1", 20_000.0)]) == {"o1": cid}
    assert desk.refer([referral("C1", "o1", 20_000.0), referral("C1", "o1", 20_000.0)]) == {"o1": cid}
    assert counts(desk) == before
    assert len(_events(desk, cid)) == 1


def test_a_second_order_of_the_customer_joins_the_open_case(desk):
    cid = _open(desk, "C1", 10_000.0, 30_000.0, request_id="o1")
    # order entry refers the second with the receivables it knows: the first is not in them
    assert desk.refer([referral("C1", "o2", 5_000.0, 30_000.0)]) == {"o2": cid}
    case = desk.case(cid)
    assert [o["request_id"] for o in case.orders] == ["o1", "o2"]
    assert case.seq == 2 and case.state == "open"
    assert case.exposure == 45_000.0          # the open receivables with both orders
    assert len(rows(desk, "desk_cases")) == 1


def test_one_call_referring_several_orders_of_a_customer_opens_one_case(desk):
    ids = desk.refer([referral("C1", "o1", 1_000.0), referral("C1", "o2", 2_000.0), referral("C2", "o3", 3_000.0)])
    assert ids["o1"] == ids["o2"] != ids["o3"]
    assert desk.case(ids["o1"]).exposure == 3_000.0


def test_after_a_decision_the_next_referral_opens_a_new_case(desk, people):
    first = _open(desk, "C1", 20_000.0, request_id="o1")
    _decide(desk, first, people["ann"], "approve", 20_000.0)
    again = desk.refer([referral("C1", "o2", 5_000.0, 20_000.0)])["o2"]
    assert again != first
    assert desk.case(again).state == "open" and desk.case(first).state == "decided"
    assert [(r["case_id"], r["customer_seq"]) for r in rows(desk, "desk_cases")] == [(first, 1), (again, 2)]
    assert [c.case_id for c in desk.cases("C1", open_only=True)] == [again]


def test_an_unknown_case_is_not_found(desk, people):
    with pytest.raises(NotFoundError):
        desk.case(999)
    with pytest.raises(NotFoundError):
        desk.decide(999, people["ann"], 1, "decline", reason_code=REASON, text=TEXT)


# -- decisions ----------------------------------------------------------------------------------

def test_an_analyst_approves_within_50000(desk, people):
    cid = _open(desk, "C1", 20_000.0, 25_000.0, band="D", recommended_limit=40_000.0)
    case = _decide(desk, cid, people["ann"], "approve", 50_000.0, terms_days=45)
    assert case.state == "decided" and case.seq == 2
    d = case.decision
    assert (d["user_id"], d["action"], d["credit_limit"], d["terms_days"]) == ("ann", "approve", 50_000.0, 45)
    assert d["approvers"] == ["ann"] and d["amount"] == 50_000.0 and d["override"] == "up"
    assert d["reason_code"] == REASON and d["text"] == TEXT
    assert [o["final_decision"] for o in case.orders] == ["approve"]
    limit = desk.approved_limit("C1")
    assert limit["credit_limit"] == 50_000.0 and limit["terms_days"] == 45 and limit["band"] == "D"
    assert limit["case_id"] == cid and limit["approved_by"] == "ann"
    assert limit["review_date"] == "2026-02-28"     # 31 January + 1 month: February's last day
    assert len(desk.limits("C1")) == 1
    assert orders.standing_limit(desk, "C1") == (50_000.0, 45.0, None)


@pytest.mark.parametrize("band, review", [("A", "2027-01-31"), ("B", "2027-01-31"), ("C", "2026-04-30"),
                                          ("D", "2026-02-28"), ("E", "2026-02-28")])
def test_the_review_date_is_today_plus_the_bands_months(desk, people, band, review):
    assert desk.clock() == TODAY
    cid = _open(desk, "C1", 10_000.0, band=band)
    _decide(desk, cid, people["ann"], "approve", 10_000.0)
    assert desk.approved_limit("C1")["review_date"] == review


def test_the_review_date_follows_the_stores_clock(desk, people, clock):
    clock.today = date(2028, 1, 31)   # a leap year
    cid = _open(desk, "C1", 10_000.0, band="E")
    _decide(desk, cid, people["ann"], "approve", 10_000.0)
    assert desk.approved_limit("C1")["review_date"] == "2028-02-29"


@pytest.mark.parametrize("day, months, expected", [
    (date(2026, 1, 31), 1, date(2026, 2, 28)), (date(2026, 1, 15), 1, date(2026, 2, 15)),
    (date(2026, 3, 31), 1, date(2026, 4, 30)), (date(2026, 11, 30), 3, date(2027, 2, 28)),
    (date(2026, 12, 31), 12, date(2027, 12, 31)), (date(2024, 2, 29), 12, date(2025, 2, 28)),
    (date(2026, 10, 31), 36, date(2029, 10, 31)),
])
def test_add_months_keeps_the_day_or_takes_the_months_last(day, months, expected):
    assert add_months(day, months) == expected


def test_an_analyst_beyond_50000_is_refused_and_nothing_is_written(desk, people):
    cid = _open(desk, "C1", 20_000.0, 25_000.0)
    before = counts(desk)
    with pytest.raises(AuthorityError) as e:
        _decide(desk, cid, people["ann"], "approve", 60_000.0)     # the limit beyond authority
    assert e.value.field == "authority" and "authority" in str(e.value)
    big = _open(desk, "C2", 45_000.0, 10_000.0)                     # the exposure beyond authority
    before = counts(desk)
    with pytest.raises(AuthorityError):
        _decide(desk, big, people["ann"], "approve", 55_000.0)
    with pytest.raises(AuthorityError):
        _decide(desk, big, people["ann"], "set_limit", 50_000.01)
    assert counts(desk) == before
    assert desk.limits() == [] and desk.case(cid).state == "open" and desk.case(big).seq == 1
    assert [r["action"] for r in desk.trail()].count("decide") == 0


def test_an_analyst_may_decline_any_amount_and_a_decline_writes_no_limit(desk, people):
    cid = _open(desk, "C1", 900_000.0, recommended_limit=1_000_000.0)
    case = _decide(desk, cid, people["ann"], "decline", reason_code="RISK")
    assert case.state == "decided" and case.decision["override"] == "down"
    assert [o["final_decision"] for o in case.orders] == ["decline"]
    assert desk.limits() == []


def test_only_a_possible_second_approver_declines_a_case_awaiting_the_second_approval(desk, people):
    """A decline accepts no exposure, but once a manager approved a case above the top
    amount, an analyst may not overrule it: only someone who could give the second approval."""
    cid = _open(desk, "C1", 300_000.0)
    _decide(desk, cid, people["max"], "approve", 300_000.0)
    before = counts(desk)
    with pytest.raises(AuthorityError) as e:
        _decide(desk, cid, people["ann"], "decline", reason_code="RISK")
    assert e.value.field == "authority" and counts(desk) == before
    case = _decide(desk, cid, people["mia"], "decline", reason_code="RISK")
    assert case.state == "decided" and case.decision["action"] == "decline"


@pytest.mark.parametrize("who", ["vic", "ada"])
def test_a_viewer_or_admin_decides_nothing(desk, people, who):
    cid = _open(desk, "C1", 1_000.0)
    before = counts(desk)
    for action, limit in (("approve", 1_000.0), ("decline", None)):
        with pytest.raises(AuthorityError) as e:
            _decide(desk, cid, people[who], action, limit)
        assert e.value.field == "role"
    assert counts(desk) == before


def test_a_bad_decision_names_its_field_and_writes_nothing(desk, people):
    cid = _open(desk, "C1", 10_000.0)
    before = counts(desk)
    for kw, field in (({"action": "grant"}, "action"), ({"reason_code": "NOPE"}, "reason_code"),
                      ({"text": "  "}, "text"), ({"credit_limit": 5_000.0}, "credit_limit"),
                      ({"terms_days": 400}, "terms_days"),
                      ({"action": "approve_with_conditions", "conditions": ["  "]}, "conditions")):
        args = {"action": "approve", "credit_limit": 10_000.0, **kw}
        with pytest.raises(InputError) as e:
            _decide(desk, cid, people["ann"], **args)
        assert e.value.field == field, kw
    assert counts(desk) == before


def test_a_manager_decides_up_to_250000_alone(desk, people):
    cid = _open(desk, "C1", 200_000.0, 50_000.0)
    case = _decide(desk, cid, people["max"], "approve_with_conditions", 250_000.0)
    assert case.state == "decided" and case.decision["approvers"] == ["max"]
    assert case.decision["conditions"] == ["personal guarantee of the director"]
    assert desk.approved_limit("C1")["credit_limit"] == 250_000.0


def test_above_250000_the_first_approval_waits_for_a_second(desk, people):
    cid = _open(desk, "C1", 280_000.0)
    case = _decide(desk, cid, people["max"], "approve", 300_000.0)
    assert case.state == "awaiting_second" and case.seq == 2
    assert [(a["user_id"], a["action"], a["credit_limit"]) for a in case.approvals] == [("max", "approve", 300_000.0)]
    assert case.decision is None
    assert desk.limits() == [] and desk.approved_limit("C1") is None
    assert [r["action"] for r in desk.trail("case", str(cid))][-1] == "first_approval"
    assert cid in [c.case_id for c in desk.queue()]      # still waiting on the desk


def test_the_first_approver_cannot_give_the_second_approval(desk, people):
    cid = _open(desk, "C1", 280_000.0)
    _decide(desk, cid, people["max"], "approve", 300_000.0)
    before = counts(desk)
    with pytest.raises(AuthorityError) as e:
        _decide(desk, cid, people["max"], "approve", 300_000.0)
    assert e.value.field == "authority" and "max" in str(e.value)
    with pytest.raises(AuthorityError):
        _decide(desk, cid, people["ann"], "approve", 300_000.0)        # an analyst cannot either
    assert counts(desk) == before and desk.case(cid).state == "awaiting_second"


@pytest.mark.parametrize("second", ["mia", "cora"])
def test_a_second_approver_confirming_the_first_decides_the_case(desk, people, second):
    cid = _open(desk, "C1", 280_000.0, band="C")
    _decide(desk, cid, people["max"], "approve", 300_000.0, terms_days=30)
    case = _decide(desk, cid, people[second], "approve", 300_000.0, terms_days=30)
    assert case.state == "decided" and case.seq == 3
    assert case.decision["approvers"] == ["max", second] and case.decision["user_id"] == second
    limit = desk.approved_limit("C1")
    assert limit["credit_limit"] == 300_000.0 and limit["terms_days"] == 30
    assert limit["approved_by"] == f"max,{second}" and limit["review_date"] == "2026-04-30"
    assert len(desk.limits("C1")) == 1
    assert cid not in [c.case_id for c in desk.queue()]


@pytest.mark.parametrize("change", [
    {"credit_limit": 310_000.0},                      # more than the first approved
    {"credit_limit": 290_000.0},                      # less, still above 250,000
    {"credit_limit": 280_000.0, "action": "approve_with_conditions"},
    {"terms_days": 90},
    {"action": "set_limit", "credit_limit": 200_000.0},   # within one person's authority, yet not the first's
])
def test_a_second_approver_proposing_another_decision_is_refused(desk, people, change):
    cid = _open(desk, "C1", 280_000.0)
    _decide(desk, cid, people["max"], "approve", 300_000.0, terms_days=60)
    before = counts(desk)
    args = {"action": "approve", "credit_limit": 300_000.0, "terms_days": 60, **change}
    with pytest.raises(AuthorityError) as e:
        _decide(desk, cid, people["cora"], **args)
    assert e.value.field == "authority"
    assert counts(desk) == before and desk.approved_limit("C1") is None


def test_the_second_may_decline(desk, people):
    cid = _open(desk, "C1", 280_000.0)
    _decide(desk, cid, people["max"], "approve", 300_000.0)
    case = _decide(desk, cid, people["cora"], "decline", reason_code="RISK")
    assert case.state == "decided" and case.decision["action"] == "decline"
    assert case.decision["approvers"] == ["max", "cora"]
    assert [o["final_decision"] for o in case.orders] == ["decline"]
    assert desk.limits() == []


# -- stale reads -------------------------------------------------------------------------------

def test_a_decision_on_an_old_reading_is_stale_and_writes_nothing(desk, people):
    cid = _open(desk, "C1", 10_000.0, request_id="o1")
    desk.refer([referral("C1", "o2", 1_000.0)])
    assert desk.case(cid).seq == 2
    before = counts(desk)
    with pytest.raises(StaleCaseError) as e:
        _decide(desk, cid, people["ann"], "approve", 11_000.0, seen=1)
    assert e.value.http_status == 409 and e.value.field == "seen"
    assert counts(desk) == before


def test_an_order_that_joined_after_the_analyst_read_the_case_makes_the_decision_stale(desk, people):
    cid = _open(desk, "C1", 10_000.0, request_id="o1")
    read = desk.case(cid)                                   # the analyst reads the case ...
    desk.refer([referral("C1", "o2", 30_000.0)])            # ... an order joins it ...
    with pytest.raises(StaleCaseError) as e:                # ... and the decision on the old reading fails
        _decide(desk, cid, people["ann"], "approve", 10_000.0, seen=read.seq)
    assert "referred" in str(e.value)
    again = desk.case(cid)
    assert again.exposure == 40_000.0
    case = _decide(desk, cid, people["ann"], "approve", 40_000.0, seen=again.seq)
    assert [o["final_decision"] for o in case.orders] == ["approve", "approve"]


def test_a_decided_case_cannot_be_decided_again(desk, people):
    cid = _open(desk, "C1", 10_000.0)
    case = _decide(desk, cid, people["ann"], "approve", 10_000.0)
    with pytest.raises(StaleCaseError):
        _decide(desk, cid, people["abe"], "decline", seen=case.seq)
    with pytest.raises(StaleCaseError):
        _decide(desk, cid, people["abe"], "decline", seen=case.seq - 1)
    assert len(desk.limits()) == 1 and desk.case(cid).decision["user_id"] == "ann"


# -- the approved limit's review ----------------------------------------------------------------

def test_an_expired_limit_opens_a_review_once_and_its_decision_sets_a_new_limit(desk, people, clock):
    cid = _open(desk, "C1", 20_000.0, band="D")
    _decide(desk, cid, people["ann"], "approve", 30_000.0)
    assert orders.standing_limit(desk, "C1") == (30_000.0, 60.0, None)
    clock.today = date(2026, 2, 27)
    assert orders.standing_limit(desk, "C1") == (30_000.0, 60.0, None)   # the day before its review
    assert desk.open_reviews() == {}
    clock.today = date(2026, 3, 2)                                 # past the review date
    limit, terms, row = orders.standing_limit(desk, "C1")
    assert math.isnan(limit) and math.isnan(terms) and row["credit_limit"] == 30_000.0 and row["review_date"] == "2026-02-28"

    opened = desk.open_reviews()
    assert list(opened) == ["C1"]
    review = desk.case(opened["C1"])
    assert (review.kind, review.state, review.orders) == ("review", "open", [])
    assert review.facts["approved_limit"] == 30_000.0
    assert desk.open_reviews() == opened                     # again: the same case, no second
    assert [c.kind for c in desk.cases("C1")] == ["referral", "review"]

    decided = _decide(desk, review.case_id, people["ann"], "set_limit", 40_000.0)
    assert decided.state == "decided" and decided.decision["orders"] == {}
    new = desk.approved_limit("C1")
    assert new["credit_limit"] == 40_000.0 and new["case_id"] == review.case_id
    assert new["review_date"] == "2026-04-02"
    assert len(desk.limits("C1")) == 2
    assert orders.standing_limit(desk, "C1") == (40_000.0, 60.0, None)
    assert desk.open_reviews() == {}


def test_a_review_declined_withdraws_the_limit(desk, people, clock):
    cid = _open(desk, "C1", 20_000.0, band="E")
    _decide(desk, cid, people["ann"], "approve", 20_000.0)
    clock.today = date(2026, 6, 1)
    review = desk.open_reviews()["C1"]
    _decide(desk, review, people["ann"], "decline", reason_code="OVD")
    withdrawn = desk.approved_limit("C1")
    assert withdrawn["credit_limit"] is None and withdrawn["case_id"] == review
    limit, terms, row = orders.standing_limit(desk, "C1")
    assert math.isnan(limit) and math.isnan(terms) and row is None
    assert desk.open_reviews() == {}                          # nothing stands, nothing to review
    assert [r["action"] for r in desk.trail("limit", "C1")] == ["approve_limit", "withdraw_limit"]


def test_an_open_case_is_the_customers_review(desk, people, clock):
    cid = _open(desk, "C1", 10_000.0)
    _decide(desk, cid, people["ann"], "approve", 10_000.0)
    clock.today = date(2026, 5, 1)
    other = desk.refer([referral("C1", "o2", 1_000.0)])["o2"]
    assert desk.open_reviews() == {"C1": other}
    assert len(desk.cases("C1")) == 2


# -- the queue ----------------------------------------------------------------------------------

def test_the_queue_puts_the_most_at_stake_first_then_the_oldest(desk, people):
    # PDs exact in binary, so that equal stakes are equal
    a = _open(desk, "A", 10_000.0, pd_12m=0.125)           # 1,250 at stake
    b = _open(desk, "B", 8_000.0, pd_12m=0.5)              # 4,000
    c = _open(desk, "C", 16_000.0, pd_12m=0.25)            # 4,000, opened after B
    d = _open(desk, "D", 20_000.0, pd_12m=0.25)            # 5,000
    e = _open(desk, "E", 1_500.0, pd_12m=None)             # unscored: PD 1, 1,500
    gone = _open(desk, "F", 40_000.0, pd_12m=0.875)        # the most, but decided
    _decide(desk, gone, people["ann"], "decline")
    queue = desk.queue()
    assert [q.case_id for q in queue] == [d, b, c, e, a]
    assert [q.priority for q in queue] == [5_000.0, 4_000.0, 4_000.0, 1_500.0, 1_250.0]
    assert gone not in [q.case_id for q in queue]
    desk.refer([referral("A", "A-o2", 30_000.0, pd_12m=0.125)])   # A's exposure grows: 5,000 at stake
    assert [q.case_id for q in desk.queue()] == [a, d, b, c, e]    # as much as D's, and older


# -- the trail ----------------------------------------------------------------------------------

def test_each_action_appends_a_trail_row_naming_who_and_the_change(desk):
    key = desk.add_user("ann", "Ann", "analyst", by="ada")
    desk.set_role("ann", "manager", by="ada")
    spare = desk.new_key("ann", "spare", by="ada")
    desk.revoke_key(spare, by="ada")
    ann = desk.authenticate(key)
    cid = _open(desk, "C1", 10_000.0, request_id="o1")
    desk.refer([referral("C1", "o2", 5_000.0)])
    _decide(desk, cid, ann, "approve", 20_000.0)
    nxt = _open(desk, "C1", 1_000.0, request_id="o3")
    _decide(desk, nxt, ann, "set_limit", 25_000.0)

    trail = desk.trail()
    assert [(r["user_id"], r["action"], r["object"]) for r in trail] == [
        ("ada", "add_user", "user"), ("ada", "new_key", "key"), ("ada", "set_role", "user"),
        ("ada", "new_key", "key"), ("ada", "revoke_key", "key"),
        ("system", "open_case", "case"), ("system", "join_case", "case"),
        ("ann", "decide", "case"), ("ann", "approve_limit", "limit"),
        ("system", "open_case", "case"), ("ann", "decide", "case"), ("ann", "approve_limit", "limit")]
    assert trail[0]["old"] is None and trail[0]["new"]["role"] == "analyst"
    assert (trail[2]["old"]["role"], trail[2]["new"]["role"]) == ("analyst", "manager")
    assert trail[4]["object_id"] == hashlib.sha256(spare.encode()).hexdigest()[:12]
    assert trail[6]["object_id"] == str(cid) and trail[6]["new"]["request_id"] == "o2"
    assert trail[7]["old"] == {"state": "open"}
    assert trail[7]["new"]["action"] == "approve" and trail[7]["new"]["credit_limit"] == 20_000.0
    assert trail[8]["object_id"] == "C1" and trail[8]["old"] is None and trail[8]["new"]["credit_limit"] == 20_000.0
    assert trail[11]["old"]["credit_limit"] == 20_000.0 and trail[11]["new"]["credit_limit"] == 25_000.0
    assert all(r["at"] for r in trail)
    assert [r["action"] for r in desk.trail("case", str(cid))] == ["open_case", "join_case", "decide"]
    assert len(desk.trail(last=3)) == 3 and desk.trail(last=3)[-1]["id"] == trail[-1]["id"]


def _every_table_filled(desk):
    key = desk.add_user("ann", "Ann", "analyst", by="ada")
    desk.revoke_key(desk.new_key("ann", "spare", by="ada"), by="ada")
    cid = _open(desk, "C1", 10_000.0)
    _decide(desk, cid, desk.authenticate(key), "approve", 10_000.0)
    desk.record_step("C1", "INV1", "reminder", "done", "ann")
    filled = counts(desk)
    assert all(filled[t] > 0 for t in schema.APPEND_ONLY), filled
    return filled


def test_the_database_refuses_an_update_or_delete_on_every_desk_table(desk):
    filled = _every_table_filled(desk)
    assert set(schema.APPEND_ONLY) == {"desk_users", "desk_keys", "desk_key_revocations", "desk_cases",
                                       "desk_case_events", "desk_limits", "desk_trail", "desk_collection_steps"}
    for table in schema.APPEND_ONLY:
        col = next(c.name for c in schema.metadata.tables[table].columns if isinstance(c.type, sa.String))
        for sql in (f"UPDATE {table} SET {col} = {col}", f"DELETE FROM {table}"):
            with pytest.raises(sa.exc.DBAPIError) as e, desk.engine.begin() as conn:
                conn.exec_driver_sql(sql)
            assert "append-only" in str(e.value), (table, sql)
    assert counts(desk) == filled


# -- set_limit decides the case's orders ----------------------------------------------------------

def test_set_limit_approves_the_orders_in_arrival_order_while_within_the_limit(desk, people):
    cid = _open(desk, "C1", 20_000.0, 10_000.0, request_id="a")
    desk.refer([referral("C1", "b", 30_000.0, 10_000.0)])
    desk.refer([referral("C1", "c", 15_000.0, 10_000.0)])
    assert desk.case(cid).exposure == 75_000.0
    case = _decide(desk, cid, people["ann"], "set_limit", 40_000.0)    # within the analyst's 50,000
    assert case.decision["orders"] == {"a": "approve", "b": "decline", "c": "decline"}
    assert [o["final_decision"] for o in case.orders] == ["approve", "decline", "decline"]
    assert desk.approved_limit("C1")["credit_limit"] == 40_000.0


def test_set_limit_still_approves_a_later_order_that_fits(desk, people):
    cid = _open(desk, "C1", 20_000.0, 10_000.0, request_id="a")
    desk.refer([referral("C1", "b", 30_000.0, 10_000.0), referral("C1", "c", 5_000.0, 10_000.0)])
    case = _decide(desk, cid, people["ann"], "set_limit", 35_000.0)
    assert case.decision["orders"] == {"a": "approve", "b": "decline", "c": "approve"}


def test_set_limit_below_the_open_receivables_declines_every_order(desk, people):
    cid = _open(desk, "C1", 1_000.0, 50_000.0, request_id="a")
    case = _decide(desk, cid, people["ann"], "set_limit", 40_000.0)
    assert case.decision["orders"] == {"a": "decline"}


@pytest.mark.parametrize("action", ["approve", "approve_with_conditions", "decline"])
def test_other_actions_decide_every_order_alike(desk, people, action):
    cid = _open(desk, "C1", 20_000.0, request_id="a")
    desk.refer([referral("C1", "b", 25_000.0)])
    case = _decide(desk, cid, people["ann"], action, None if action == "decline" else 45_000.0)
    assert case.decision["orders"] == {"a": action, "b": action}


def test_final_orders_edge_of_the_limit(desk):
    cid = _open(desk, "C1", 20_000.0, 10_000.0, request_id="a")
    desk.refer([referral("C1", "b", 10_000.0, 10_000.0)])
    case = desk.case(cid)
    assert _final_orders(case, "set_limit", 40_000.0) == {"a": "approve", "b": "approve"}   # exactly the limit
    assert _final_orders(case, "set_limit", 39_999.99) == {"a": "approve", "b": "decline"}
    assert _final_orders(case, "set_limit", 0.0) == {"a": "decline", "b": "decline"}


def test_referral_is_importable_from_the_store():
    r = Referral("C1", "o1", {"exposure": 1.0})
    assert (r.customer_id, r.request_id, r.facts["exposure"]) == ("C1", "o1", 1.0)



# -- found wanting ----------------------------------------------------------------------------------

def test_revoking_a_key_twice_is_answered_by_the_desk_not_the_database(desk):
    """An admin revoking a key already revoked is told so (or nothing happens); the database's
    unique-key error is not the answer."""
    key = desk.add_user("ann", "Ann", "analyst", by="ada")
    desk.revoke_key(key, by="ada")
    try:
        desk.revoke_key(key, by="ada")       # said again: already revoked (or nothing to do)
    except InputError:
        pass
    assert len(rows(desk, "desk_key_revocations")) == 1
    with pytest.raises(AuthError):
        desk.authenticate(key)


@pytest.mark.parametrize("prefix", ["%", "_" * 12, "%" + "_" * 3])
def test_a_prefix_of_wildcards_revokes_no_key(desk, prefix):
    """A prefix is the first characters of a key's hash, taken literally: SQL wildcards in it
    match nothing."""
    key = desk.add_user("ann", "Ann", "analyst", by="ada")
    with pytest.raises(InputError) as e:
        desk.revoke_key(prefix, by="ada")     # not hexadecimal: refused before any query
    assert e.value.field == "key" and "hexadecimal" in str(e.value)
    assert desk.authenticate(key).user_id == "ann"


def test_an_order_joining_a_case_awaiting_its_second_approval_leaves_it_approvable(desk, people):
    """A first approval that an order joining the case has outgrown cannot bind the second
    approver: the grown case can still be approved, not only declined."""
    cid = _open(desk, "C1", 280_000.0, request_id="o1")
    _decide(desk, cid, people["max"], "approve", 300_000.0)
    desk.refer([referral("C1", "o2", 40_000.0)])          # the exposure is now 320,000
    assert desk.case(cid).exposure == 320_000.0
    # the first approval (300,000) no longer covers the case; two approvers approve it afresh
    _decide(desk, cid, people["mia"], "approve", 320_000.0)
    case = _decide(desk, cid, people["cora"], "approve", 320_000.0)
    assert case.state == "decided" and desk.approved_limit("C1")["credit_limit"] == 320_000.0


@pytest.mark.parametrize("terms", [30.5, -1, 366, True])
def test_terms_are_a_whole_number_of_days(desk, people, terms):
    """Terms are whole days in [0, 365]: a fraction is refused, not recorded as 30.5 in the
    decision while the limit row holds another number."""
    cid = _open(desk, "C1", 10_000.0)
    before = counts(desk)
    with pytest.raises(InputError) as e:
        _decide(desk, cid, people["ann"], "approve", 10_000.0, terms_days=terms)
    assert e.value.field == "terms_days"
    assert counts(desk) == before


# -- what order entry and the rescore ask of the desk ---------------------------------------------

def _scored(customer_ids, decisions):
    import pandas as pd

    n = len(customer_ids)
    return pd.DataFrame({"customer_id": customer_ids, "decision": decisions, "pd_12m": [0.25] * n,
                         "band": ["C"] * n, "grade": ["6"] * n, "exposure": [8_000.0] * n,
                         "recommended_limit": [5_000.0] * n, "model_version": ["3"] * n,
                         "reason_1": ["overdue invoices"] * n, "reason_2": [math.nan] * n})


def test_the_rescores_referrals_open_cases_once(desk):
    referrals = orders.book_referrals(_scored(["C1", "C2", "C3"], ["refer", "approve", "refer"]), "2026-01-31", 2)
    assert [(r.customer_id, r.request_id) for r in referrals] == [
        ("C1", "rescore:2026-01-31:C1"), ("C3", "rescore:2026-01-31:C3")]
    assert referrals[0].facts["reasons"] == ["overdue invoices"] and referrals[0].facts["order_amount"] == 0.0
    ids = desk.refer(referrals, by="rescore")
    again = desk.refer(orders.book_referrals(_scored(["C1", "C3"], ["refer", "refer"]), "2026-01-31", 2), by="rescore")
    assert again == ids and len(desk.cases()) == 2
    case = desk.case(ids["rescore:2026-01-31:C1"])
    assert case.exposure == 8_000.0 and case.priority == 2_000.0 and case.opened_by == "rescore"


@pytest.mark.parametrize("length", [64, 200])
def test_a_long_customer_id_can_be_referred_by_the_rescore(desk, length):
    """Order entry takes customer ids of up to 64 characters, a book's own may be longer; the
    rescore names its referral ``rescore:<date>:<customer id>``, which the desk must hold, and
    an approved limit of such a customer too (PostgreSQL refuses what is too long)."""
    long_id = "C" * length
    referrals = orders.book_referrals(_scored([long_id], ["refer"]), "2026-01-31", 2)
    ids = desk.refer(referrals, by="rescore")
    case = desk.case(ids[referrals[0].request_id])
    assert case.customer_id == long_id
    user = desk.authenticate(desk.add_user("ann", "Ann", "analyst", by="ada"))
    desk.decide(case.case_id, user, case.seq, "set_limit", reason_code=REASON, text=TEXT, credit_limit=1_000.0)
    assert desk.approved_limit(long_id)["credit_limit"] == 1_000.0


def test_with_approved_limits_gives_the_standing_limits_only(desk, people, clock):
    import pandas as pd

    for customer, band in (("C1", "A"), ("C2", "E")):
        cid = _open(desk, customer, 1_000.0, band=band)
        _decide(desk, cid, people["ann"], "approve", 2_000.0)
    clock.today = date(2026, 3, 15)                      # C2's month is over, C1's year is not
    feats = pd.DataFrame({"customer_id": ["C1", "C2", "C3"]})
    out, tally = orders.with_approved_limits(feats, desk)
    assert out["approved_limit"].iloc[0] == 2_000.0 and out["approved_terms_days"].iloc[0] == 60.0
    assert out["approved_limit"].iloc[1:].isna().all() and out["approved_terms_days"].iloc[1:].isna().all()
    assert tally == {"approved_limits": 1, "reviews_due": 1}
    none, nothing = orders.with_approved_limits(feats, None)
    assert none["approved_limit"].isna().all() and nothing == {"approved_limits": 0, "reviews_due": 0}


def test_a_desk_that_cannot_be_read_is_unavailable_without_its_address(desk):
    from riskcast.errors import DeskUnavailableError

    with desk.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE desk_limits")
    with pytest.raises(DeskUnavailableError) as e:
        orders.standing_limit(desk, "C1")
    assert e.value.http_status == 503
    message = str(e.value)
    assert "\n" not in message and "127.0.0.1" not in message and "desk.sqlite" not in message
