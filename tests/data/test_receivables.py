"""Aging, DSO (count-back and simple), average days delinquent and the collection
effectiveness index against figures worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from riskcast.data.receivables import (aging, book_receivables, bucket_labels, collection_effectiveness,
                                       receivables_at)
from riskcast.data.ledger import open_invoices

AS_OF = pd.Timestamp("2025-03-31")


def _inv(rows):
    df = pd.DataFrame(rows, columns=["invoice_id", "customer_id", "issue_date", "due_date", "amount", "paid_date",
                                     "paid_amount"])
    for c in ("issue_date", "due_date", "paid_date"):
        df[c] = pd.to_datetime(df[c])
    df["paid_amount"] = df["paid_amount"].astype(float)
    return df


BOOK = _inv([
    # A: 100 open 50 days past due, 200 paid, 300 not yet due
    ("I1", "A", "2025-01-10", "2025-02-09", 100.0, None, np.nan),
    ("I2", "A", "2025-03-05", "2025-04-04", 200.0, "2025-03-20", np.nan),
    ("I3", "A", "2025-03-15", "2025-04-14", 300.0, None, np.nan),
    # B: 700 open over two months of sales (500 in March, 400 in February), one of them part paid
    ("J1", "B", "2025-02-10", "2025-03-12", 400.0, "2025-03-25", 200.0),   # 200 left, 19 days past due
    ("J2", "B", "2025-03-10", "2025-04-09", 500.0, None, np.nan),
    ("J3", "B", "2024-10-01", "2024-10-31", 250.0, "2025-03-30", 250.0),   # paid the day before
    # C: no sales for a year, one invoice 120 days past due
    ("K1", "C", "2024-01-01", "2024-12-01", 80.0, None, np.nan),
])


def test_the_buckets_add_up_to_the_open_receivables_of_each_customer_and_the_book():
    aged = aging(open_invoices(BOOK, AS_OF), (30, 60, 90))
    assert list(aged.columns) == ["current", "1-30", "31-60", "61-90", "90+", "open"] == [*bucket_labels((30, 60, 90)),
                                                                                        "open"]
    assert aged.loc["A"].to_dict() == {"current": 300.0, "1-30": 0.0, "31-60": 100.0, "61-90": 0.0, "90+": 0.0,
                                       "open": 400.0}
    assert aged.loc["B", "current"] == 500.0 and aged.loc["B", "1-30"] == 200.0 and aged.loc["C", "90+"] == 80.0
    np.testing.assert_allclose(aged[bucket_labels((30, 60, 90))].sum(axis=1), aged["open"])
    assert aged["open"].sum() == pytest.approx(open_invoices(BOOK, AS_OF)["open_amount"].sum())
    # other buckets, the same total
    wide = aging(open_invoices(BOOK, AS_OF), (15, 45))
    assert list(wide.columns) == ["current", "1-15", "16-45", "45+", "open"]
    np.testing.assert_allclose(wide["open"], aged["open"])


def test_dso_by_count_back_and_simply_and_the_average_days_delinquent_by_hand():
    r = receivables_at(BOOK, AS_OF, (30, 60, 90), days=90)
    # A: 400 open; March's sales (Feb 28 - Mar 31, 31 days) 500 cover it: 400/500 x 31
    assert r.loc["A", "dso_countback"] == 24.8
    # simple: sales of the last 90 days (Dec 31 - Mar 31) 600: 400/600 x 90; ADD: the 100 overdue
    assert r.loc["A", "dso_simple"] == 60.0 and r.loc["A", "add"] == 15.0
    # B: 700 open; March's 500 (31 days) whole, then 200 of February's 400 (28 days): 31 + 14
    assert r.loc["B", "dso_countback"] == 45.0
    assert r.loc["B", "dso_simple"] == round(700 / 900 * 90, 1) and r.loc["B", "add"] == 20.0
    # C: receivables and no sales within the count-back: beyond it
    assert math.isinf(r.loc["C", "dso_countback"]) and math.isinf(r.loc["C", "dso_simple"])
    book = book_receivables(BOOK, AS_OF, (30, 60, 90), 90)
    assert book["open"] == 1180.0 == pytest.approx(r["open"].sum()) and sum(book["aging"].values()) == 1180.0
    assert book["aging"]["current"] == 800.0 and book["aging_share"]["90+"] == round(80 / 1180, 4)
    assert book["dso_simple"] == round(1180 / 1500 * 90, 1) and book["add"] == round(380 / 1500 * 90, 1)
    assert book["customers_with_open"] == 3 and book["sales"] == 1500.0
    # the book's 1,180 against its March sales 1,000 (31 days) and February's 400 (28 days)
    assert book["dso_countback"] == round(31 + 180 / 400 * 28, 1)


def test_the_collection_effectiveness_index_by_hand():
    a = BOOK[BOOK["customer_id"] == "A"]
    # (Feb 28, Mar 31]: 100 open at the start, 500 sold, 400 open at the end of which 300 current
    assert collection_effectiveness(a, pd.Timestamp("2025-02-28"), AS_OF) == round(200 / 300, 4)
    b = BOOK[BOOK["customer_id"] == "B"]
    # start: J1 400 and J3 250 open; sold 500; end: 700 open, 500 current -> (650+500-700)/(650+500-500)
    assert collection_effectiveness(b, pd.Timestamp("2025-02-28"), AS_OF) == round(450 / 650, 4)
    nothing = BOOK[BOOK["customer_id"] == "Z"]
    assert collection_effectiveness(nothing, pd.Timestamp("2025-02-28"), AS_OF) is None


# -- the provision matrix -----------------------------------------------------------------------

HISTORY_AS_OF = pd.Timestamp("2025-12-31")
#: snapshots 12 months back and one quarter before it: 2024-12-31 and 2024-09-30
HISTORY = _inv([
    # open on 2024-09-30, not yet due, paid in 2025: no loss; open on 2024-12-31? paid 2024-11-15, no
    ("H1", "P", "2024-09-01", "2024-10-01", 1_000.0, "2024-11-15", np.nan),
    # 40 days past due on 2024-09-30 (31-60), never paid: lost from both snapshots (on 2024-12-31 it is 131 days: 90+)
    ("H2", "Q", "2024-07-22", "2024-08-21", 500.0, None, np.nan),
    # 10 days past due on 2024-12-31 (1-30), half paid in 2025-06: 150 of 300 lost
    ("H3", "R", "2024-11-21", "2024-12-21", 300.0, "2025-06-01", 150.0),
    # current on 2024-12-31, paid 2026-02-01, after the outcome window: lost (unpaid 12 months on)
    ("H4", "S", "2024-12-15", "2025-01-14", 200.0, "2026-02-01", np.nan),
])
DEFAULTS = pd.DataFrame({"customer_id": ["Q", "S"], "default_date": pd.to_datetime(["2024-10-15", "2025-05-01"])})


def test_the_provision_matrixs_loss_rates_and_the_observed_default_rate_by_hand():
    from riskcast.data.receivables import loss_rates

    h = loss_rates(HISTORY, DEFAULTS, HISTORY_AS_OF, (30, 60, 90), horizon_months=12, snapshots=2, step_months=3)
    assert h["snapshots"] == ["2024-12-31", "2024-09-30"]
    # 2024-12-31: H2 500 in 90+, H3 300 in 1-30, H4 200 current; 2024-09-30: H1 1,000 current, H2 500 in 31-60
    assert h["open"] == {"current": 1_200.0, "1-30": 300.0, "31-60": 500.0, "61-90": 0.0, "90+": 500.0}
    assert h["lost"] == {"current": 200.0, "1-30": 150.0, "31-60": 500.0, "61-90": 0.0, "90+": 500.0}
    assert h["loss_rates"] == {"current": pytest.approx(200 / 1200, abs=1e-6), "1-30": 0.5, "31-60": 1.0,
                               "61-90": None, "90+": 1.0}
    # not in default on the snapshot: 2024-12-31 R 300 + S 200 (S defaults 2025-05-01); 2024-09-30 P 1,000 + Q 500
    # (Q defaults 2024-10-15): defaulted 200 + 500 of 2,000
    assert h["observed_default_rate"] == pytest.approx(700 / 2000, abs=1e-6)


def test_the_provision_is_the_aging_times_the_rates_adjusted_by_the_books_pd():
    from riskcast.data.receivables import loss_rates, provision

    h = loss_rates(HISTORY, DEFAULTS, HISTORY_AS_OF, (30, 60, 90), horizon_months=12, snapshots=2, step_months=3)
    aging_now = {"current": 6_000.0, "1-30": 1_000.0, "31-60": 400.0, "61-90": 100.0, "90+": 50.0}
    p = provision(aging_now, h, book_pd=0.175)          # half the observed 35%
    assert p["adjustment"] == pytest.approx(0.5)
    b = p["buckets"]
    assert b["current"]["provision"] == pytest.approx(6_000 * (200 / 1200) * 0.5, abs=0.01)     # 500
    assert b["1-30"]["provision"] == pytest.approx(1_000 * 0.5 * 0.5)                           # 250
    assert b["31-60"]["provision"] == pytest.approx(400 * 1.0 * 0.5)                            # 200
    # 61-90 has no history: the rate of the bucket before it (31-60)
    assert b["61-90"]["loss_rate"] == 1.0 and "31-60" in b["61-90"]["note"]
    assert p["provision"] == pytest.approx(500 + 250 + 200 + 50 + 25, abs=0.01)
    # a PD above the history's rate scales the rates up, never above 100%
    up = provision(aging_now, h, book_pd=0.70)
    assert up["buckets"]["90+"]["adjusted_rate"] == 1.0 and up["buckets"]["1-30"]["adjusted_rate"] == 1.0
    # without PDs (or defaults) the historical rates stand
    assert provision(aging_now, h, None)["adjustment"] == 1.0
    assert loss_rates(HISTORY, None, HISTORY_AS_OF, snapshots=2)["observed_default_rate"] is None
