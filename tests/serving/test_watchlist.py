"""The early-warning watchlist: each trigger hits at its threshold and not below it, with its
figures named; the order pattern it reads from the ledger; the rescore writes the hits beside
the book and opens a review case on the desk for each customer on the list, once."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from riskcast.config import WatchlistConfig
from riskcast.data.io import read_tables
from riskcast.features.payment import InvoiceLedger
from riskcast.serving.core import ScoringCore
from riskcast.serving.desk.store import DeskStore, Referral
from riskcast.serving.rescore import read_previous, rescore_to_file, watch_request_id, watchlist_path
from riskcast.serving.watchlist import HIT_COLUMNS, TRIGGERS, watchlist, watchlist_lines

CFG = WatchlistConfig()
GRADES = ["AAA", "AA", "A", "BBB", "BB", "B", "CCC"]
NO_HITS = {t: 0 for t in TRIGGERS}


def _frame(rows: list[dict], **columns) -> pd.DataFrame:
    """One row per customer: every row has ``columns`` (the defaults), each row's own values over them."""
    base = {"pd_12m": 0.01, "grade": "BBB", "exposure": 1_000.0, "dbt_trend": 0.0, "statement_age_days": np.nan,
            **columns}
    return pd.DataFrame([{**base, **r} for r in rows])


def _of(hits: pd.DataFrame, trigger: str) -> pd.DataFrame:
    return hits[hits["trigger"] == trigger].set_index("customer_id")


# -- the triggers, one by one ------------------------------------------------------------------

def test_a_pd_that_doubled_hits_pd_rise_and_one_just_short_of_double_or_of_the_minimum_rise_does_not():
    now = _frame([
        {"customer_id": "doubled", "pd_12m": 0.02, "previous_pd_12m": 0.01},
        {"customer_id": "short", "pd_12m": 0.0199, "previous_pd_12m": 0.01},
        {"customer_id": "at_min", "pd_12m": 0.004, "previous_pd_12m": 0.002},   # up by 0.20 points: the minimum
        {"customer_id": "tiny", "pd_12m": 0.0038, "previous_pd_12m": 0.0019},   # doubled, but up by 0.19 points
        {"customer_id": "tripled", "pd_12m": 0.03, "previous_pd_12m": 0.01},
        {"customer_id": "new", "pd_12m": 0.5, "previous_pd_12m": np.nan},       # not in the previous rescore
        {"customer_id": "better", "pd_12m": 0.01, "previous_pd_12m": 0.04},
    ], grade_change=0)
    hits = watchlist(now, CFG, GRADES)
    rise = _of(hits, "pd_rise")
    assert sorted(rise.index) == ["at_min", "doubled", "tripled"]
    assert set(hits["trigger"]) == {"pd_rise"}
    d = rise.loc["doubled"]
    assert (d["value"], d["reference"], d["threshold"]) == (0.02, 0.01, 1.0)
    assert d["text"] == "PD 2.00%, up from 1.00% at the previous rescore (x2.00; the trigger: x2.00)"
    assert rise.loc["at_min", "text"] == "PD 0.40%, up from 0.20% at the previous rescore (x2.00; the trigger: x2.00)"
    assert "x3.00;" in rise.loc["tripled", "text"]
    assert (d["pd_12m"], d["grade"], d["exposure"]) == (0.02, "BBB", 1_000.0)


def test_pd_rise_follows_its_configured_share_and_names_the_rescore_it_compares_with():
    cfg = WatchlistConfig(pd_rise=0.5, pd_min_rise=0.0)
    now = _frame([{"customer_id": "half_up", "pd_12m": 0.03, "previous_pd_12m": 0.02},
                  {"customer_id": "not_half", "pd_12m": 0.0299, "previous_pd_12m": 0.02}])
    hits = watchlist(now, cfg, GRADES, previous="the rescore of 2025-03-31")
    assert list(hits["customer_id"]) == ["half_up"]
    assert hits.loc[0, "threshold"] == 0.5
    assert hits.loc[0, "text"] == "PD 3.00%, up from 2.00% at the rescore of 2025-03-31 (x1.50; the trigger: x1.50)"


def test_without_a_previous_rescore_neither_pd_rise_nor_a_grade_drop_can_hit():
    now = _frame([{"customer_id": "c1", "pd_12m": 0.9, "grade": "CCC"}])
    assert watchlist(now, CFG, GRADES).empty


def test_a_grade_two_notches_down_since_the_previous_rescore_hits_grade_drop_and_one_notch_does_not():
    now = _frame([
        {"customer_id": "two", "grade": "BB", "grade_change": 2},       # A -> BB
        {"customer_id": "one", "grade": "BB", "grade_change": 1},       # BBB -> BB
        {"customer_id": "three", "grade": "CCC", "grade_change": 3},    # BBB -> CCC
        {"customer_id": "better", "grade": "A", "grade_change": -2},
        {"customer_id": "other_scale", "grade": "CCC", "grade_change": np.nan},  # graded on another scale
    ], previous_pd_12m=0.01)
    drop = _of(watchlist(now, CFG, GRADES), "grade_drop")
    assert sorted(drop.index) == ["three", "two"]
    two = drop.loc["two"]
    assert (two["value"], two["reference"], two["threshold"]) == (4.0, 2.0, 2)
    assert two["text"] == "grade BB, 2 notches below grade A at the previous rescore (the trigger: 2)"
    assert drop.loc["three", "text"] == "grade CCC, 3 notches below grade BBB at the previous rescore (the trigger: 2)"


def test_a_grade_drop_counts_from_the_desks_review_grade_where_the_desk_reviewed_the_customer():
    now = _frame([
        # the previous rescore graded it BB too, but the desk approved its limit at A
        {"customer_id": "reviewed_at_A", "grade": "BB", "grade_change": 0},
        # two notches since the previous rescore, but only one since the desk's review at BBB
        {"customer_id": "reviewed_at_BBB", "grade": "BB", "grade_change": 2},
        # graded on another scale before: the desk's review still counts
        {"customer_id": "reviewed_at_AA", "grade": "BB", "grade_change": np.nan},
        {"customer_id": "not_reviewed", "grade": "BB", "grade_change": 2},
    ], previous_pd_12m=0.01)
    reviewed = pd.DataFrame({"customer_id": ["reviewed_at_A", "reviewed_at_BBB", "reviewed_at_AA", "elsewhere"],
                             "grade": ["A", "BBB", "AA", "AAA"],
                             "reviewed_on": ["2025-01-15", "2025-02-01", "2024-11-30", "2025-01-01"]})
    drop = _of(watchlist(now, CFG, GRADES, reviewed), "grade_drop")
    assert sorted(drop.index) == ["not_reviewed", "reviewed_at_A", "reviewed_at_AA"]
    assert drop.loc["reviewed_at_A", "text"] == \
        "grade BB, 2 notches below grade A at the desk's review of 2025-01-15 (the trigger: 2)"
    assert (drop.loc["reviewed_at_A", "value"], drop.loc["reviewed_at_A", "reference"]) == (4.0, 2.0)
    assert drop.loc["reviewed_at_AA", "text"] == \
        "grade BB, 3 notches below grade AA at the desk's review of 2024-11-30 (the trigger: 2)"
    assert drop.loc["not_reviewed", "text"] == \
        "grade BB, 2 notches below grade A at the previous rescore (the trigger: 2)"


def test_the_desks_review_grade_counts_without_a_previous_rescore():
    now = _frame([{"customer_id": "c1", "grade": "B"}, {"customer_id": "c2", "grade": "B"}])
    reviewed = pd.DataFrame({"customer_id": ["c1"], "grade": ["BBB"], "reviewed_on": ["2025-05-02"]})
    hits = watchlist(now, CFG, GRADES, reviewed)
    assert list(hits["customer_id"]) == ["c1"] and list(hits["trigger"]) == ["grade_drop"]
    assert hits.loc[0, "text"] == \
        "grade B, 2 notches below grade BBB at the desk's review of 2025-05-02 (the trigger: 2)"


def test_paying_15_days_later_than_usual_hits_paying_later_and_14_9_days_does_not():
    now = _frame([{"customer_id": "later", "dbt_trend": 15.0}, {"customer_id": "nearly", "dbt_trend": 14.9},
                  {"customer_id": "much_later", "dbt_trend": 40.25}, {"customer_id": "earlier", "dbt_trend": -20.0},
                  {"customer_id": "no_history", "dbt_trend": np.nan}])
    later = _of(watchlist(now, CFG, GRADES), "paying_later")
    assert sorted(later.index) == ["later", "much_later"]
    row = later.loc["later"]
    assert (row["value"], row["reference"], row["threshold"]) == (15.0, 0.0, 15.0)
    assert row["text"] == ("paying 15.0 days later than its usual: mean days beyond terms of the last 3 months "
                           "over the last 12 months' (the trigger: 15 days)")
    assert later.loc["much_later", "text"].startswith("paying 40.2 days later")


def test_orders_three_times_the_usual_hit_orders_jump_a_tenth_hits_orders_drop_and_just_inside_neither():
    now = _frame([
        {"customer_id": "jump", "orders_recent": 3_000.0, "orders_usual": 1_000.0, "months_with_orders": 9},
        {"customer_id": "nearly_jump", "orders_recent": 2_999.99, "orders_usual": 1_000.0, "months_with_orders": 12},
        {"customer_id": "drop", "orders_recent": 100.0, "orders_usual": 1_000.0, "months_with_orders": 12},
        {"customer_id": "nearly_drop", "orders_recent": 100.01, "orders_usual": 1_000.0, "months_with_orders": 12},
        {"customer_id": "stopped", "orders_recent": 0.0, "orders_usual": 12_500.0, "months_with_orders": 10},
        {"customer_id": "steady", "orders_recent": 1_000.0, "orders_usual": 1_000.0, "months_with_orders": 12},
        {"customer_id": "new", "orders_recent": np.nan, "orders_usual": np.nan, "months_with_orders": np.nan},
    ])
    hits = watchlist(now, CFG, GRADES)
    assert set(hits["trigger"]) == {"orders_jump", "orders_drop"}
    jump, drop = _of(hits, "orders_jump"), _of(hits, "orders_drop")
    assert list(jump.index) == ["jump"] and sorted(drop.index) == ["drop", "stopped"]
    j = jump.loc["jump"]
    assert (j["value"], j["reference"], j["threshold"]) == (3_000.0, 1_000.0, 3.0)
    assert j["text"] == \
        "orders of 3,000 a month over the last 3 months, 3.0 times its usual 1,000 (the trigger: 3 times)"
    d = drop.loc["drop"]
    assert (d["value"], d["reference"], d["threshold"]) == (100.0, 1_000.0, 0.1)
    assert d["text"] == "orders of 100 a month over the last 3 months, 10% of its usual 1,000 (the trigger: 10%)"
    assert drop.loc["stopped", "text"] == \
        "orders of 0 a month over the last 3 months, 0% of its usual 12,500 (the trigger: 10%)"


def test_an_irregular_buyer_never_hits_the_order_triggers():
    now = _frame([  # bought in 8 of the 12 months before: fewer than orders_min_months (9)
        {"customer_id": "irregular_up", "orders_recent": 50_000.0, "orders_usual": 1_000.0, "months_with_orders": 8},
        {"customer_id": "irregular_down", "orders_recent": 0.0, "orders_usual": 1_000.0, "months_with_orders": 8},
        {"customer_id": "regular_up", "orders_recent": 50_000.0, "orders_usual": 1_000.0, "months_with_orders": 9},
    ])
    hits = watchlist(now, CFG, GRADES)
    assert list(zip(hits["customer_id"], hits["trigger"])) == [("regular_up", "orders_jump")]
    # with the bar lowered to 8 months, both irregular buyers count
    low = watchlist(now, WatchlistConfig(orders_min_months=8), GRADES)
    assert sorted(zip(low["customer_id"], low["trigger"])) == [
        ("irregular_down", "orders_drop"), ("irregular_up", "orders_jump"), ("regular_up", "orders_jump")]


def test_the_order_triggers_name_a_one_month_window_as_the_last_month():
    cfg = WatchlistConfig(orders_recent_months=1, orders_high=2.5)
    now = _frame([{"customer_id": "c1", "orders_recent": 2_500.0, "orders_usual": 1_000.0, "months_with_orders": 12}])
    hits = watchlist(now, cfg, GRADES)
    assert hits.loc[0, "text"] == \
        "orders of 2,500 a month over the last month, 2.5 times its usual 1,000 (the trigger: 2.5 times)"


def test_statements_more_than_18_months_old_hit_statements_overdue_and_a_customer_that_never_filed_does_not():
    limit = 18 * 30.4375  # 547.875 days
    now = _frame([{"customer_id": "overdue", "statement_age_days": 548.0},
                  {"customer_id": "due", "statement_age_days": 547.0},
                  {"customer_id": "exactly", "statement_age_days": limit},  # not more than 18 months
                  {"customer_id": "never_filed", "statement_age_days": np.nan},
                  {"customer_id": "long_overdue", "statement_age_days": 1_000.0}])
    late = _of(watchlist(now, CFG, GRADES), "statements_overdue")
    assert sorted(late.index) == ["long_overdue", "overdue"]
    row = late.loc["overdue"]
    assert (row["value"], row["reference"], row["threshold"]) == (548.0, limit, 18.0)
    assert row["text"] == "the latest statement's period ended 548 days ago (the trigger: 18 months)"
    twelve = watchlist(now, WatchlistConfig(statements_overdue_months=12), GRADES)  # 365.25 days
    assert sorted(twelve["customer_id"]) == ["due", "exactly", "long_overdue", "overdue"]
    assert watchlist(_frame([{"customer_id": "c", "statement_age_days": 365.0}]),
                     WatchlistConfig(statements_overdue_months=12), GRADES).empty


def test_a_frame_without_the_optional_columns_and_without_a_hit_gives_an_empty_list_of_the_hit_columns():
    now = pd.DataFrame({"customer_id": ["a", "b"], "pd_12m": [0.01, 0.5], "grade": ["AAA", "CCC"],
                        "exposure": [10.0, 20.0]})
    hits = watchlist(now, CFG, GRADES)
    assert hits.empty and list(hits.columns) == list(HIT_COLUMNS)


def test_the_hits_are_ordered_by_exposure_then_customer_then_the_triggers_order():
    now = _frame([
        {"customer_id": "b", "exposure": 500.0, "pd_12m": 0.05, "previous_pd_12m": 0.01, "grade": "B",
         "grade_change": 3, "statement_age_days": 900.0},
        {"customer_id": "a", "exposure": 500.0, "orders_recent": 5_000.0, "orders_usual": 1_000.0,
         "months_with_orders": 12},
        {"customer_id": "c", "exposure": 900.0, "grade": "CCC", "grade_change": 2},
        {"customer_id": "d", "exposure": 50.0, "dbt_trend": 30.0},
        {"customer_id": "e", "exposure": 10_000.0},  # on no trigger
    ], previous_pd_12m=0.01, grade_change=0, orders_recent=np.nan, orders_usual=np.nan, months_with_orders=np.nan)
    hits = watchlist(now, CFG, GRADES)
    assert list(zip(hits["customer_id"], hits["trigger"])) == [
        ("c", "grade_drop"), ("a", "orders_jump"),
        ("b", "pd_rise"), ("b", "grade_drop"), ("b", "statements_overdue"),
        ("d", "paying_later")]
    assert list(hits.columns) == list(HIT_COLUMNS)
    assert list(hits["exposure"]) == [900.0, 500.0, 500.0, 500.0, 500.0, 50.0]


def test_the_summary_line_counts_customers_hits_and_each_trigger():
    s = {"customers": 2, "hits": 3, "by_trigger": {**NO_HITS, "pd_rise": 2, "orders_drop": 1}, "reviews_opened": 1}
    assert watchlist_lines(s) == [
        "watchlist: 2 customers, 3 trigger hits (pd rise:2  grade drop:0  paying later:0  orders jump:0  "
        "orders drop:1  statements overdue:0); 1 review cases opened on the desk"]


# -- the order pattern from the ledger ---------------------------------------------------------

def _invoices(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    n = len(rows)
    issue = pd.to_datetime([r[1] for r in rows])
    return pd.DataFrame({"invoice_id": [f"I{i}" for i in range(n)], "customer_id": [r[0] for r in rows],
                         "issue_date": issue, "due_date": issue + pd.Timedelta(days=30),
                         "amount": [r[2] for r in rows], "paid_date": pd.NaT, "paid_amount": np.nan,
                         "disputed": False, "dispute_date": pd.NaT})


def test_the_order_pattern_counts_calendar_months_back_from_the_as_of_date():
    as_of = pd.Timestamp("2025-06-15")
    # month 0 is (2025-05-15, 2025-06-15], month 1 (2025-04-15, 2025-05-15], ... month 14 (2024-03-15, 2024-04-15]
    rows = [("a", "2025-06-15", 600.0),     # on the as-of date: the last month
            ("a", "2025-06-16", 5_000.0),   # after it: not known
            ("a", "2025-05-16", 300.0),     # month 0
            ("a", "2025-05-15", 900.0),     # month 1 (its last day)
            ("a", "2025-03-16", 300.0),     # month 2 (its first day)
            ("a", "2025-03-15", 1_200.0),   # exactly 3 months back: month 3, before the recent window
            *[("a", str((as_of - pd.DateOffset(months=k) - pd.Timedelta(days=3)).date()), 1_200.0)
              for k in range(4, 11)],       # months 4 to 10
            ("a", "2024-03-16", 1_200.0),   # month 14 (its first day)
            ("a", "2024-03-15", 7_777.0),   # exactly 15 months back: outside
            ("old", "2023-01-10", 1_000.0),  # nothing in the 15 months
            ("only_recent", "2025-06-10", 333.33),
            ("later", "2025-07-01", 1_000.0)]  # invoiced only after the as-of date
    got = InvoiceLedger.from_invoices(_invoices(rows)).order_pattern(as_of)
    assert sorted(got.index) == ["a", "only_recent"] and got.index.name == "customer_id"
    # recent: months 0, 1, 2 = 900, 900, 300; before: 1,200 in months 3-10 and 14 (9 months of 12)
    assert got.loc["a", "orders_recent"] == pytest.approx((900.0 + 900.0 + 300.0) / 3)
    assert got.loc["a", "orders_usual"] == pytest.approx(9 * 1_200.0 / 12)
    assert got.loc["a", "months_with_orders"] == 9
    assert got.loc["only_recent", "orders_recent"] == pytest.approx(111.11)
    assert got.loc["only_recent", "orders_usual"] == 0.0 and got.loc["only_recent", "months_with_orders"] == 0

    one = InvoiceLedger.from_invoices(_invoices(rows)).order_pattern(as_of, recent=1)
    # recent: month 0 = 900; before: months 1-12 = 900 + 300 + 8 x 1,200 (months 3-10), in 10 of 12
    assert one.loc["a", "orders_recent"] == pytest.approx(900.0)
    assert one.loc["a", "orders_usual"] == pytest.approx((900.0 + 300.0 + 8 * 1_200.0) / 12)
    assert one.loc["a", "months_with_orders"] == 10


def test_the_order_pattern_at_a_month_end_counts_back_by_calendar_months():
    as_of = pd.Timestamp("2025-05-31")  # 3 months back is 2025-02-28; 2 months back 2025-03-31
    rows = [("m", "2025-03-01", 300.0),   # month 2: (2025-02-28, 2025-03-31]
            ("m", "2025-02-28", 1_200.0),  # month 3
            ("m", "2025-05-31", 600.0)]    # month 0
    got = InvoiceLedger.from_invoices(_invoices(rows)).order_pattern(as_of)
    assert got.loc["m", "orders_recent"] == pytest.approx(300.0)
    assert got.loc["m", "orders_usual"] == pytest.approx(100.0)
    assert got.loc["m", "months_with_orders"] == 1


# -- the rescore: the watchlist beside the book --------------------------------------------------

AS_OF = pd.Timestamp("2025-06-30")
#: each customer's invoiced amount by month back from the as-of date (index 0: the last month)
BOOK = {
    "jumper": [3_000.0] * 3 + [1_000.0] * 12,     # three times its usual over the last 3 months
    "steady": [1_000.0] * 15,
    "dropper": [100.0] * 3 + [1_000.0] * 12,      # a tenth of its usual
    "irregular": [5_000.0] * 3 + [1_000.0, 0.0] * 6,  # five times, but it bought in 6 of the 12 months
}
JUMP_TEXT = "orders of 3,000 a month over the last 3 months, 3.0 times its usual 1,000 (the trigger: 3 times)"
DROP_TEXT = "orders of 100 a month over the last 3 months, 10% of its usual 1,000 (the trigger: 10%)"


def _write_book(folder):
    """The book's invoices CSV: one invoice a month per customer, 5 days before the month's end,
    paid on its due date (30 days on) when that has come."""
    rows = []
    for cid, amounts in BOOK.items():
        for m, amount in enumerate(amounts):
            if not amount:
                continue
            issue = AS_OF - pd.DateOffset(months=m) - pd.Timedelta(days=5)
            due = issue + pd.Timedelta(days=30)
            rows.append((f"{cid}-{m}", cid, issue, due, amount, due if due <= AS_OF else pd.NaT))
    inv = pd.DataFrame(rows, columns=["invoice_id", "customer_id", "issue_date", "due_date", "amount", "paid_date"])
    for col in ("issue_date", "due_date", "paid_date"):
        inv[col] = inv[col].dt.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    inv.to_csv(folder / "invoices.csv", index=False)
    return folder


def _rescore(core, data, out, desk=None, previous=None):
    tables = read_tables(data, with_truth=False, reject_bad_customers=True)
    return rescore_to_file(tables, ScoringCore(core.cfg, core.model, None, registry=core.registry, desk=desk),
                           AS_OF, out, previous=previous)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    return _write_book(tmp_path_factory.mktemp("watch") / "ledger")


@pytest.fixture(scope="module")
def first(core, book):
    return _rescore(core, book, book.parent / "book.parquet")


def test_a_customer_ordering_three_times_its_usual_is_on_the_rescores_watchlist_and_a_steady_one_is_not(first):
    scored = pd.read_parquet(first.out).set_index("customer_id")
    assert sorted(scored.index) == sorted(BOOK)
    wl = pd.read_parquet(watchlist_path(first.out))
    assert watchlist_path(first.out) == first.out.with_name("book.watchlist.parquet")
    assert list(wl.columns) == list(HIT_COLUMNS)
    # ordered by exposure: the jumper's open invoice of 3,000 before the dropper's of 100
    assert list(zip(wl["customer_id"], wl["trigger"])) == [("jumper", "orders_jump"), ("dropper", "orders_drop")]
    j = wl.iloc[0]
    assert (j["value"], j["reference"], j["threshold"]) == (3_000.0, 1_000.0, 3.0)
    assert j["text"] == JUMP_TEXT
    assert j["exposure"] == 3_000.0 == scored.loc["jumper", "exposure"]
    assert j["pd_12m"] == scored.loc["jumper", "pd_12m"] and j["grade"] == scored.loc["jumper", "grade"]
    d = wl.iloc[1]
    assert (d["value"], d["reference"], d["threshold"], d["text"]) == (100.0, 1_000.0, 0.1, DROP_TEXT)
    assert d["exposure"] == 100.0
    s = first.summary["watchlist"]
    assert s == {"customers": 2, "hits": 2, "by_trigger": {**NO_HITS, "orders_jump": 1, "orders_drop": 1},
                 "file": str(watchlist_path(first.out))}
    assert "reviews_opened" not in s  # no desk
    assert json.loads(first.summary_path.read_text())["watchlist"] == s


def test_a_pd_under_half_of_it_in_the_previous_rescore_puts_that_customer_alone_on_pd_rise(core, book, first):
    scored = pd.read_parquet(first.out).set_index("customer_id")
    was = float(scored.loc["steady", "pd_12m"])
    assert was - 0.4 * was >= CFG.pd_min_rise  # a rise of more than the minimum, for this model's PD
    previous = read_previous(first.out)
    previous.loc["steady", "pd_12m"] = 0.4 * was
    second = _rescore(core, book, book.parent / "second.parquet", previous=previous)
    again = pd.read_parquet(second.out).set_index("customer_id")
    assert again["pd_12m"].to_dict() == scored["pd_12m"].to_dict()  # the same book scores the same
    wl = pd.read_parquet(watchlist_path(second.out))
    rise = wl[wl["trigger"] == "pd_rise"]
    assert list(rise["customer_id"]) == ["steady"]
    r = rise.iloc[0]
    assert r["value"] == pytest.approx(was) and r["reference"] == pytest.approx(0.4 * was) and r["threshold"] == 1.0
    assert r["text"] == (f"PD {was:.2%}, up from {0.4 * was:.2%} at the previous rescore (x2.50; the trigger: x2.00)")
    assert second.summary["watchlist"]["by_trigger"] == {**NO_HITS, "pd_rise": 1, "orders_jump": 1, "orders_drop": 1}
    assert second.summary["watchlist"]["customers"] == 3


# -- the desk: a review case per customer on the list, once ------------------------------------

REFERRAL_FACTS = {"decision": "refer", "decision_reason": "the order takes the exposure over the limit",
                  "pd_12m": 0.012, "grade": "4", "band": "B", "exposure": 600.0, "order_amount": 500.0,
                  "recommended_limit": 400.0, "recommended_terms_days": 30}


def test_the_rescore_opens_a_review_case_per_watchlist_customer_once_and_joins_an_open_referral(core, book, tmp_path):
    desk = DeskStore(f"sqlite:///{tmp_path}/desk.sqlite")
    try:
        referral_id = desk.refer([Referral("dropper", "order-1", REFERRAL_FACTS)])["order-1"]
        before = desk.case(referral_id)
        assert before.kind == "referral" and before.watch == []

        result = _rescore(core, book, tmp_path / "book.parquet", desk=desk)
        scored = pd.read_parquet(result.out).set_index("customer_id")
        assert result.summary["watchlist"]["reviews_opened"] == 1
        assert result.summary["desk"]["cases_opened"] == 0  # the rescore referred no order of its own
        cases = desk.cases(open_only=True)
        assert sorted((c.customer_id, c.kind) for c in cases) == [("dropper", "referral"), ("jumper", "review")]

        review = next(c for c in cases if c.customer_id == "jumper")
        assert review.state == "open" and review.opened_by == "watchlist" and review.orders == []
        assert review.watch == [{"trigger": "orders_jump", "value": 3_000.0, "reference": 1_000.0, "threshold": 3.0,
                                 "text": JUMP_TEXT}]
        assert review.facts["decision"] == "review"
        assert review.facts["decision_reason"] == "watchlist: " + JUMP_TEXT
        assert review.facts["as_of"] == "2025-06-30"
        assert review.facts["pd_12m"] == pytest.approx(scored.loc["jumper", "pd_12m"])
        assert review.facts["grade"] == scored.loc["jumper", "grade"]
        assert review.facts["exposure"] == 3_000.0 and review.exposure == 3_000.0
        assert [(e["kind"], e["request_id"]) for e in review.events] == [
            ("review_due", watch_request_id("jumper", "2025-06-30"))]

        joined = desk.case(referral_id)
        assert joined.state == "open" and joined.kind == "referral"
        assert joined.facts == before.facts == REFERRAL_FACTS  # the order's facts stand
        assert joined.orders == before.orders and [o["request_id"] for o in joined.orders] == ["order-1"]
        assert joined.watch == [{"trigger": "orders_drop", "value": 100.0, "reference": 1_000.0, "threshold": 0.1,
                                 "text": DROP_TEXT}]
        assert [e["kind"] for e in joined.events] == ["referred", "review_due"]
        assert joined.events[-1]["request_id"] == watch_request_id("dropper", "2025-06-30")

        # the same rescore run again: every watchlist referral is on the desk already
        seen = {c.case_id: (c.seq, c.watch, c.facts) for c in desk.cases()}
        again = _rescore(core, book, tmp_path / "again.parquet", desk=desk)
        assert again.summary["watchlist"]["reviews_opened"] == 0
        assert again.summary["watchlist"]["customers"] == 2
        assert {c.case_id: (c.seq, c.watch, c.facts) for c in desk.cases()} == seen
    finally:
        desk.close()


def test_a_grade_drop_since_the_desk_approved_the_limit_puts_the_customer_on_the_watchlist(core, book, first,
                                                                                       tmp_path):
    grades = [str(g) for g in core.model.bundle.master_scale.grades]
    now = str(pd.read_parquet(first.out).set_index("customer_id").loc["steady", "grade"])
    assert grades.index(now) >= 2, "the steady customer's grade leaves no room for two notches down"
    then = grades[grades.index(now) - 2]
    desk = DeskStore(f"sqlite:///{tmp_path}/desk.sqlite")
    try:
        case_id = desk.refer([Referral("steady", "order-7", {**REFERRAL_FACTS, "grade": then, "band": "A"})])["order-7"]
        user = desk.authenticate(desk.add_user("ann", "Ann Analyst", "analyst", by="admin"))
        desk.decide(case_id, user, desk.case(case_id).seq, "approve", reason_code="PAY", text="pays on time",
                    credit_limit=5_000.0, terms_days=30)
        approved_on = desk.limits("steady")[0]["approved_at"][:10]
        assert desk.review_grades(AS_OF.date()) == [
            {"customer_id": "steady", "grade": then, "reviewed_on": approved_on}]

        result = _rescore(core, book, tmp_path / "book.parquet", desk=desk)
        wl = pd.read_parquet(watchlist_path(result.out))
        drop = wl[wl["trigger"] == "grade_drop"]
        assert list(drop["customer_id"]) == ["steady"]
        assert drop.iloc[0]["text"] == \
            f"grade {now}, 2 notches below grade {then} at the desk's review of {approved_on} (the trigger: 2)"
        assert result.summary["watchlist"]["by_trigger"] == {**NO_HITS, "grade_drop": 1, "orders_jump": 1,
                                                             "orders_drop": 1}
        # the approved case is decided: the watchlist opens a review case of its own
        reviews = desk.cases("steady", open_only=True)
        assert len(reviews) == 1 and reviews[0].kind == "review" and reviews[0].case_id != case_id
        assert [h["trigger"] for h in reviews[0].watch] == ["grade_drop"]
        assert result.summary["watchlist"]["reviews_opened"] == 3  # the steady, the jumper and the dropper
    finally:
        desk.close()


def test_a_desk_without_a_standing_approval_has_no_review_grades(tmp_path):
    desk = DeskStore(f"sqlite:///{tmp_path}/desk.sqlite")
    try:
        desk.refer([Referral("c1", "order-1", REFERRAL_FACTS)])
        assert desk.review_grades(date(2025, 6, 30)) == []
    finally:
        desk.close()
