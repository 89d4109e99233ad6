"""Two service workers on one desk database, each with a store of its own: of two decisions
taken at once on the same reading one is recorded and the other told the case changed, and
orders of one customer referred at once all land in one case."""

from __future__ import annotations

from riskcast.errors import StaleCaseError

from .helpers import REASON, TEXT, referral, rows, run_at_once

ROUNDS = 5
REFERRERS = 8



def test_two_analysts_deciding_one_case_at_once_one_wins_the_other_is_stale(desk, workers):
    ann = desk.authenticate(desk.add_user("ann", "Ann", "analyst", by="ada"))
    abe = desk.authenticate(desk.add_user("abe", "Abe", "analyst", by="ada"))
    one, two = workers(2)
    for round_ in range(ROUNDS):
        customer = f"C{round_}"
        cid = desk.refer([referral(customer, f"{customer}-o1", 20_000.0, 10_000.0)])[f"{customer}-o1"]
        seen = desk.case(cid).seq
        plans = [(one, ann, 40_000.0), (two, abe, 45_000.0)]
        results = run_at_once(lambda i: plans[i][0].decide(
            cid, plans[i][1], seen, "approve", reason_code=REASON, text=TEXT, credit_limit=plans[i][2],
            terms_days=30), 2)

        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], StaleCaseError), repr(lost[0])
        winner = won[0].decision["user_id"]
        assert winner in ("ann", "abe")

        events = [e for e in rows(desk, "desk_case_events") if e["case_id"] == cid]
        assert [e["kind"] for e in events] == ["referred", "decided"]
        assert events[-1]["user_id"] == winner
        limits = desk.limits(customer)
        assert len(limits) == 1 and limits[0]["approved_by"] == winner
        assert limits[0]["credit_limit"] == (40_000.0 if winner == "ann" else 45_000.0)
        case_trail = desk.trail("case", str(cid))
        assert [r["action"] for r in case_trail].count("decide") == 1
        assert [r["user_id"] for r in case_trail if r["action"] == "decide"] == [winner]
        assert [r["action"] for r in desk.trail("limit", customer)] == ["approve_limit"]
        assert desk.case(cid).state == "decided"


def test_two_second_approvals_at_once_decide_the_case_once(desk, workers):
    people = {u: desk.authenticate(desk.add_user(u, u.title(), role, by="ada"))
              for u, role in (("max", "manager"), ("mia", "manager"), ("cora", "credit_committee"))}
    one, two = workers(2)
    for round_ in range(ROUNDS):
        customer = f"C{round_}"
        cid = desk.refer([referral(customer, f"{customer}-o1", 280_000.0)])[f"{customer}-o1"]
        first = desk.decide(cid, people["max"], 1, "approve", reason_code=REASON, text=TEXT,
                            credit_limit=300_000.0, terms_days=60)
        assert first.state == "awaiting_second"
        seconds = [(one, people["mia"]), (two, people["cora"])]
        results = run_at_once(lambda i: seconds[i][0].decide(
            cid, seconds[i][1], first.seq, "approve", reason_code=REASON, text=TEXT, credit_limit=300_000.0,
            terms_days=60), 2)
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], StaleCaseError), results
        second = won[0].decision["user_id"]
        limits = desk.limits(customer)
        assert len(limits) == 1 and limits[0]["approved_by"] == f"max,{second}"
        assert [e["kind"] for e in rows(desk, "desk_case_events") if e["case_id"] == cid] == [
            "referred", "approval", "decided"]


def test_orders_of_one_customer_referred_at_once_all_join_one_case(desk, workers):
    stores = workers(REFERRERS)
    for round_ in range(ROUNDS):
        customer = f"C{round_}"
        rids = [f"{customer}-o{i}" for i in range(REFERRERS)]
        results = run_at_once(lambda i: stores[i].refer([referral(customer, rids[i], 1_000.0 * (i + 1))]), REFERRERS)

        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        ids = {rid: r[rid] for rid, r in zip(rids, results)}
        assert len(set(ids.values())) == 1, ids
        cases = desk.cases(customer)
        assert len(cases) == 1, [c.case_id for c in cases]
        case = cases[0]
        assert case.case_id == next(iter(ids.values())) and case.state == "open"
        assert sorted(o["request_id"] for o in case.orders) == sorted(rids)
        assert [e["seq"] for e in case.events] == list(range(1, REFERRERS + 1))
        assert case.exposure == sum(1_000.0 * (i + 1) for i in range(REFERRERS))
        actions = [r["action"] for r in desk.trail("case", str(case.case_id))]
        assert actions == ["open_case"] + ["join_case"] * (REFERRERS - 1)
    assert [r["customer_seq"] for r in rows(desk, "desk_cases")] == [1] * ROUNDS


def test_an_order_referred_while_the_case_is_decided_joins_it_or_opens_the_next(desk, workers):
    """A referral racing a decision: either it joined before (and the decision is stale, or
    decided it too) or it came after and opened the customer's next case; never lost."""
    ann = desk.authenticate(desk.add_user("ann", "Ann", "analyst", by="ada"))
    decider, referrer = workers(2)
    for round_ in range(ROUNDS):
        customer = f"C{round_}"
        cid = desk.refer([referral(customer, f"{customer}-o1", 10_000.0)])[f"{customer}-o1"]
        late = f"{customer}-o2"
        work = [lambda: decider.decide(cid, ann, 1, "approve", reason_code=REASON, text=TEXT, credit_limit=10_000.0),
                lambda: referrer.refer([referral(customer, late, 2_000.0)])]
        decided, referred = run_at_once(lambda i: work[i](), 2)
        assert not isinstance(referred, BaseException), referred
        joined = referred[late]
        cases = desk.cases(customer)
        if isinstance(decided, BaseException):
            assert isinstance(decided, StaleCaseError), repr(decided)
            assert joined == cid and len(cases) == 1 and cases[0].state == "open"
            assert desk.limits(customer) == []
        else:
            assert joined != cid and len(cases) == 2
            assert [c.state for c in cases] == ["decided", "open"]
            assert [o["request_id"] for o in cases[1].orders] == [late]
            assert len(desk.limits(customer)) == 1


def test_one_order_referred_from_several_workers_at_once_is_one_referral(desk, workers):
    stores = workers(REFERRERS)
    for round_ in range(ROUNDS):
        customer = f"C{round_}"
        rid = f"{customer}-retried"
        results = run_at_once(lambda i: stores[i].refer([referral(customer, rid, 5_000.0)]), REFERRERS)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        assert len({r[rid] for r in results}) == 1
        cases = desk.cases(customer)
        assert len(cases) == 1 and [o["request_id"] for o in cases[0].orders] == [rid]
        assert len(cases[0].events) == 1


def test_reviews_opened_by_two_workers_at_once_open_one_case_each(desk, workers, clock):
    from datetime import date

    ann = desk.authenticate(desk.add_user("ann", "Ann", "analyst", by="ada"))
    customers = [f"C{i}" for i in range(4)]
    for c in customers:
        cid = desk.refer([referral(c, f"{c}-o1", 1_000.0, band="E")])[f"{c}-o1"]
        desk.decide(cid, ann, 1, "approve", reason_code=REASON, text=TEXT, credit_limit=1_000.0)
    clock.today = date(2026, 6, 1)
    one, two = workers(2)
    results = run_at_once(lambda i: (one, two)[i].open_reviews(), 2)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert results[0] == results[1] and sorted(results[0]) == customers
    for c in customers:
        assert [k.kind for k in desk.cases(c)] == ["referral", "review"]
