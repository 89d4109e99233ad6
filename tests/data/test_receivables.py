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
