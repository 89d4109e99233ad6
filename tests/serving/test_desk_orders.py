"""Order entry with the credit desk: a referral opens (or joins) a case once, an approved
limit decides the next order and is on record so the decision replays, an expired review
sends the order back to the recommendation and opens a review case, an unreadable desk
refuses the order; the rescore opens the book's cases once."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from riskcast.errors import DeskUnavailableError
from riskcast.serving.audit import AuditLog
from riskcast.serving.core import Order, ScoringCore
from riskcast.serving.desk.store import DeskStore


class Clock:
    def __init__(self, day: date) -> None:
        self.day = day

    def __call__(self) -> date:
        return self.day


@pytest.fixture
def desk_core(core, tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    log = AuditLog(url)
    clock = Clock(date(2026, 3, 10))
    desk = DeskStore(url, core.cfg.desk, clock=clock)
    served = ScoringCore(core.cfg, core.model, core.store, audit=log, desk=desk)
    yield served, desk, log, clock
    log.close()
    desk.close()


def _approve(desk: DeskStore, case_id: int, limit: float, who: str = "ann", terms: int | None = None) -> None:
    if who not in {u["user_id"] for u in desk.users()}:
        desk.add_user(who, who.title(), "analyst", by="test")
    user = desk.authenticate(desk.new_key(who, "test", by="test"))
    case = desk.case(case_id)
    desk.decide(case_id, user, case.seq, "approve", reason_code="PAY", text="pays on time", credit_limit=limit,
                terms_days=terms)


def _referred_then_approved(served: ScoringCore, desk: DeskStore, referable: tuple, request_id: str
                            ) -> tuple[int, float]:
    """The customer's order referred, then a quarter more than its recommended limit approved."""
    cid, limit, _, amount = referable
    case_id = served.score_order(Order(cid, amount, request_id=request_id))["case_id"]
    approved = float(round(limit * 1.25))
    _approve(desk, case_id, approved)
    return case_id, approved


def test_a_referral_opens_one_case_and_a_retry_joins_nothing(desk_core, referable_order):
    served, desk, _, _ = desk_core
    cid, limit, _, amount = referable_order
    first = served.score_order(Order(cid, amount, request_id="o-1"))
    assert first["decision"] == "refer" and first["case_id"] is not None
    again = served.score_order(Order(cid, amount, request_id="o-1"))  # the caller's retry
    assert again["case_id"] == first["case_id"]
    other = served.score_order(Order(cid, amount + 1.0, request_id="o-2"))  # another order of the customer
    assert other["decision"] == "refer" and other["case_id"] == first["case_id"]
    case = desk.case(first["case_id"])
    assert [o["request_id"] for o in case.orders] == ["o-1", "o-2"] and case.state == "open"
    assert case.facts["recommended_limit"] == pytest.approx(limit, abs=0.01)
    assert len(desk.queue()) == 1


def test_the_approved_limit_decides_the_next_order_and_replays(desk_core, referable_order):
    served, desk, log, _ = desk_core
    cid, limit, exposure, amount = referable_order
    case_id, approved = _referred_then_approved(served, desk, referable_order, "a-1")
    big = round(approved - exposure - 1.0, 2)  # past the recommended limit's refer margin, within the approved one
    d = served.score_order(Order(cid, big, request_id="a-2"))
    assert d["decision"] == "approve" and d["limit_source"] == "approved" and d["credit_limit"] == approved
    assert d["recommended_limit"] == pytest.approx(limit, abs=0.01) and "approved limit" in d["decision_reason"]
    over = served.score_order(Order(cid, approved * 2, request_id="a-3"))
    assert over["decision"] != "approve" and f"{approved:,.2f}" in over["decision_reason"]
    record = log.records(["a-2"])[0]
    assert '"approved_limit":' + repr(approved) in record["inputs"].replace(" ", "")
    assert served.decide_recorded(record) == json.loads(record["answer"]) == d  # replayed from the record alone
    # without the desk the same facts give the recommendation (the record, not the desk, replays)
    plain = ScoringCore(served.cfg, served.model, served.store)
    assert plain.score_order(Order(cid, big))["limit_source"] == "recommended"


def test_the_terms_approved_with_the_limit_are_the_most_an_order_is_offered(desk_core, referable_order):
    served, desk, _, _ = desk_core
    cid, limit, _, amount = referable_order
    case_id = served.score_order(Order(cid, amount, request_id="t-1"))["case_id"]
    band_terms = served.cfg.policy.terms_days[desk.case(case_id).facts["band"]]
    approved_terms = band_terms // 3
    _approve(desk, case_id, float(round(limit * 1.25)), terms=approved_terms)
    assert served.score_order(Order(cid, 100.0, request_id="t-2"))["recommended_terms_days"] == approved_terms
    asked = served.score_order(Order(cid, 100.0, band_terms, request_id="t-3"))
    assert asked["recommended_terms_days"] == approved_terms and asked["limit_source"] == "approved"
    shorter = served.score_order(Order(cid, 100.0, approved_terms - 5, request_id="t-4"))
    assert shorter["recommended_terms_days"] == approved_terms - 5


def test_an_expired_review_routes_to_the_recommendation_and_opens_a_review_case(desk_core, referable_order):
    served, desk, _, clock = desk_core
    cid, limit, exposure, amount = referable_order
    case_id, approved = _referred_then_approved(served, desk, referable_order, "r-1")
    review = date.fromisoformat(desk.approved_limit(cid)["review_date"])
    band = desk.case(case_id).facts["band"]
    assert review == {"A": date(2027, 3, 10), "B": date(2027, 3, 10), "C": date(2026, 6, 10)}[band]
    clock.day = review - timedelta(days=1)
    assert served.score_order(Order(cid, 100.0, request_id="r-2"))["limit_source"] == "approved"
    clock.day = review  # the review date has come: the limit no longer stands
    d = served.score_order(Order(cid, 100.0, request_id="r-3"))
    assert d["limit_source"] == "recommended" and d["credit_limit"] == pytest.approx(limit, abs=0.01)
    reviews = [c for c in desk.cases(cid) if c.kind == "review"]
    assert len(reviews) == 1 and reviews[0].state == "open"
    assert reviews[0].facts["approved_limit"] == approved and reviews[0].facts["review_date"] == review.isoformat()
    served.score_order(Order(cid, 100.0, request_id="r-4"))
    assert len([c for c in desk.cases(cid) if c.kind == "review"]) == 1  # the open review is the review
    assert desk.open_reviews() == {cid: reviews[0].case_id}  # the sweep finds the same case


def test_an_unreadable_desk_refuses_the_order_rather_than_ignore_an_approved_limit(core, tmp_path, referable_order):
    desk = DeskStore(f"sqlite:///{tmp_path / 'desk.sqlite'}", core.cfg.desk)
    served = ScoringCore(core.cfg, core.model, core.store, desk=desk)
    with desk.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE desk_limits"))
    with pytest.raises(DeskUnavailableError) as e:
        served.score_order(Order(referable_order[0], 100.0))
    assert e.value.http_status == 503 and "approved limits cannot be read" in str(e.value)
    desk.close()


def test_the_rescore_opens_the_books_cases_once(workdir_copy):
    from riskcast.cli import main
    from riskcast.config import WorkPaths, load_config
    from riskcast.serving.runtime import open_desk

    cfg = load_config(workdir_copy / "riskcast.toml")
    desk = open_desk(cfg, WorkPaths(root=workdir_copy))
    summary = json.loads((workdir_copy / "scored_book.summary.json").read_text())
    referred = summary["decisions"].get("refer", 0)
    everything = desk.queue()
    queue = [c for c in everything if c.kind == "referral"]  # the others: the watchlist's reviews
    assert referred > 0 and len(queue) == referred == summary["desk"]["cases_opened"]
    assert all(len(c.orders) == 1 and c.orders[0]["request_id"].startswith("rescore:") for c in queue)
    reviews = [c for c in everything if c.kind == "review"]
    assert len(reviews) == summary["watchlist"]["reviews_opened"] and all(c.watch for c in reviews)
    book = workdir_copy / "book"
    out = workdir_copy / "again.parquet"
    assert main(["--quiet", "rescore", "--data", str(book), "--as-of", summary["as_of"], "--out", str(out),
                 "--workdir", str(workdir_copy)]) == 0
    again = json.loads(out.with_name("again.summary.json").read_text())
    assert again["desk"] == {"referred": referred, "on_the_desk_already": referred, "cases_opened": 0,
                             "cases_joined": 0, "reviews_opened": 0}
    assert again["watchlist"]["reviews_opened"] == 0
    assert [c.case_id for c in desk.queue()] == [c.case_id for c in everything]


def test_a_referral_on_record_without_its_case_is_opened_by_the_sync(core, tmp_path, referable_order):
    """The desk could not be written when the order was decided: the audit log holds the
    referral, and the sync opens its case once, from the answer on record."""
    from riskcast.serving.desk.orders import sync_referrals

    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    log = AuditLog(url)
    cid, limit, _, amount = referable_order
    without = ScoringCore(core.cfg, core.model, core.store, audit=log)  # no desk at the time
    d = without.score_order(Order(cid, amount, request_id="s-1"))
    assert d["decision"] == "refer" and d["case_id"] is None
    desk = DeskStore(url, core.cfg.desk)
    assert sync_referrals(desk, log) == {"referrals_on_record": 1, "opened_now": 1}
    assert sync_referrals(desk, log) == {"referrals_on_record": 1, "opened_now": 0}
    case = desk.case(desk.case_of_order("s-1"))
    assert case.customer_id == cid and case.orders[0]["order_amount"] == amount
    assert case.facts["recommended_limit"] == pytest.approx(limit, abs=0.01) and case.facts["pd_12m"] == d["pd_12m"]
    log.close()
    desk.close()
