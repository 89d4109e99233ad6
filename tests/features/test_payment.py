"""Payment features: the vectorised ledger against a plain per-invoice reading of the rules."""

import math

import numpy as np
import pandas as pd
import pytest

from riskcast.features import payment
from riskcast.features.payment import COLUMNS, InvoiceLedger, payment_features

AS_OF = pd.Timestamp("2024-06-15")


def _random_invoices(n: int, customers: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    issue = AS_OF + pd.to_timedelta(rng.integers(-900, 30, n), unit="D")  # past the 24-month window
    due = issue + pd.to_timedelta(rng.choice([0, 30, 60, 90], n), unit="D")
    paid = due + pd.to_timedelta(rng.integers(-20, 150, n), unit="D")
    paid = paid.where(paid >= issue, issue)
    open_ = rng.random(n) < 0.2
    # edge days: issued, due and paid exactly on as_of
    issue = issue.where(rng.random(n) > 0.03, AS_OF)
    due = due.where((rng.random(n) > 0.05) | (issue > AS_OF), AS_OF)
    paid = paid.where(rng.random(n) > 0.05, AS_OF).where(~open_)
    paid = paid.where(paid.isna() | (paid >= issue), issue)
    amount = rng.gamma(2.0, 500.0, n).round(2)
    # a part payment on some paid invoices (the rest stays open), none on most
    part = np.asarray(pd.notna(paid)) & (rng.random(n) < 0.15)
    disputed = rng.random(n) < 0.15
    raised = pd.Series(issue + pd.to_timedelta(rng.integers(0, 90, n), unit="D")).where(disputed & (rng.random(n) < 0.8))
    return pd.DataFrame({
        "invoice_id": [f"I{i}" for i in range(n)],
        "customer_id": [f"C{c:03d}" for c in rng.integers(0, customers, n)],
        "issue_date": issue, "due_date": due,
        "amount": amount,
        "paid_date": paid, "paid_amount": np.where(part, (amount * rng.uniform(0.1, 0.9, n)).round(2), np.nan),
        "disputed": disputed, "dispute_date": raised,
    })


def _dispute_known_on(inv: pd.DataFrame) -> pd.Series:
    """The day each invoice's dispute is known: its date, or for a flag without one the
    ledger's last date (the export), never the start."""
    last = max(inv["issue_date"].max(), inv["paid_date"].max(), inv["dispute_date"].max())
    return inv["dispute_date"].where(~inv["disputed"] | inv["dispute_date"].notna(), last)


def _reference(inv: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The rules read literally, one customer and one invoice at a time."""
    c24 = as_of - pd.DateOffset(months=24)
    c12, c3 = as_of - pd.DateOffset(months=12), as_of - pd.DateOffset(months=3)
    rows = {}
    inv = inv.assign(known_dispute=_dispute_known_on(inv))
    for cust, g in inv.groupby("customer_id"):
        dbt3, dbt12, dbt24, w3, w12, disputed12, last_late, last_paid = [], [], [], [], [], [], None, None
        due60 = unpaid60 = 0
        issued12 = amount12 = open_amt = overdue_amt = 0.0
        max_overdue = max_paid12 = 0.0
        n_overdue = 0
        overdue = []  # (days past due, disputed, due date) of the open overdue invoices
        seen = False
        for r in g.itertuples():
            if r.issue_date > as_of:
                continue
            seen = True
            paid_by_then = not pd.isna(r.paid_date) and r.paid_date <= as_of
            in_part = not pd.isna(r.paid_amount) and r.paid_amount < r.amount
            settled = paid_by_then and not in_part  # a part payment leaves the rest open
            owed = r.amount - (r.paid_amount if paid_by_then and in_part else 0.0)
            disputed = not pd.isna(r.known_dispute) and r.known_dispute <= as_of
            days = max(((r.paid_date if settled else as_of) - r.due_date).days, 0)
            if r.issue_date > c12:
                issued12 += 1
                amount12 += r.amount
            if r.due_date <= as_of:
                if r.due_date > c24:
                    dbt24.append(days)
                if r.due_date > c12:
                    dbt12.append(days), w12.append(r.amount), disputed12.append(disputed)
                if r.due_date > c3:
                    dbt3.append(days), w3.append(r.amount)
                if days > 0:
                    last_late = r.due_date if last_late is None else max(last_late, r.due_date)
            if paid_by_then:  # a part payment is a payment too
                last_paid = r.paid_date if last_paid is None else max(last_paid, r.paid_date)
            if settled:
                if r.paid_date > c12:
                    max_paid12 = max(max_paid12, days)
            if as_of - pd.Timedelta(days=60) < r.due_date <= as_of:
                due60 += 1
                unpaid60 += not settled
            if not settled:
                open_amt += owed
                if r.due_date < as_of:
                    overdue_amt += owed
                    max_overdue = max(max_overdue, days)
                    n_overdue += 1
                    overdue.append((days, disputed, r.due_date))
        if not seen:
            continue
        undisputed = [d for d, disputed, _ in overdue if not disputed]
        oldest_first = sorted((d for d, _, _ in overdue), reverse=True)
        mean = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
        wmean = lambda xs, ws: sum(x * w for x, w in zip(xs, ws)) / sum(ws) if xs else math.nan  # noqa: E731
        rows[cust] = {
            "invoices_12m": issued12, "dbt_mean_3m": mean(dbt3), "dbt_mean_12m": mean(dbt12),
            "dbt_max_3m": max(dbt3, default=math.nan), "dbt_max_12m": max(dbt12, default=math.nan),
            "dbt_weighted_3m": wmean(dbt3, w3), "dbt_weighted_12m": wmean(dbt12, w12),
            "share_late_30_12m": mean([d > 30 for d in dbt12]), "share_late_60_12m": mean([d > 60 for d in dbt12]),
            "share_late_90_12m": mean([d > 90 for d in dbt12]), "dispute_rate_12m": mean(disputed12),
            "amount_12m": amount12, "open_receivables": open_amt, "overdue_amount_open": overdue_amt,
            "max_days_overdue_open": float(max_overdue),
            "overdue_share_open": overdue_amt / open_amt if open_amt > 0 else 0.0,
            "dbt_trend": mean(dbt3) - mean(dbt12),
            "months_since_late": (as_of - last_late).days / 30.4375 if last_late is not None else math.nan,
            "days_since_payment": (as_of - last_paid).days if last_paid is not None else math.nan,
            "unpaid_share_due_60d": unpaid60 / due60 if due60 else math.nan,
            "overdue_invoices_open": n_overdue,
            "overdue_beyond_usual_days": max_overdue - max_paid12 if n_overdue else math.nan,
            "overdue_invoices_undisputed": len(undisputed),
            "overdue_days_undisputed_max": max(undisputed, default=0),
            "overdue_days_undisputed_sum": sum(undisputed),
            "second_oldest_overdue_days": oldest_first[1] if len(oldest_first) > 1 else 0,
            "overdue_since_payment": sum(last_paid is None or due > last_paid for _, _, due in overdue),
            "max_days_late_24m": max(dbt24, default=math.nan),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")[COLUMNS].astype("float64")
    out.index.name = "customer_id"
    return out


@pytest.mark.parametrize("chunk", [4_000_000, 97])
def test_ledger_follows_the_rules_invoice_by_invoice(monkeypatch, chunk):
    monkeypatch.setattr(payment, "_CHUNK", chunk)  # many chunks must add up to one
    inv = _random_invoices(2500, 60, seed=3)
    got = payment_features(inv, AS_OF).sort_index()
    want = _reference(inv, AS_OF)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-10)


def test_one_ledger_serves_many_dates():
    inv = _random_invoices(1500, 40, seed=8)
    ledger = InvoiceLedger.from_invoices(inv)
    for as_of in (AS_OF - pd.DateOffset(months=7), AS_OF - pd.Timedelta(days=1), AS_OF):
        pd.testing.assert_frame_equal(ledger.features(as_of).sort_index(), _reference(inv, as_of),
                                      check_exact=False, rtol=1e-10)


def test_customer_ids_in_any_string_form_give_the_same_features():
    inv = _random_invoices(800, 30, seed=5)
    plain = payment_features(inv, AS_OF).sort_index()
    for dtype in ("category", "string[pyarrow]", "string[python]"):
        other = payment_features(inv.astype({"customer_id": dtype}), AS_OF).sort_index()
        pd.testing.assert_frame_equal(other, plain, obj=dtype)
        assert other.index.dtype == object


def test_an_invoice_due_today_is_not_overdue_until_tomorrow():
    inv = pd.DataFrame({
        "invoice_id": ["a"], "customer_id": ["C1"],
        "issue_date": pd.to_datetime(["2024-05-16"]), "due_date": pd.to_datetime(["2024-06-15"]),
        "amount": [500.0], "paid_date": pd.to_datetime([None]), "paid_amount": [np.nan], "disputed": [False],
    })
    today = payment_features(inv, AS_OF).loc["C1"]
    tomorrow = payment_features(inv, AS_OF + pd.Timedelta(days=1)).loc["C1"]
    assert today["open_receivables"] == 500.0 and today["overdue_amount_open"] == 0.0
    assert tomorrow["overdue_amount_open"] == 500.0 and tomorrow["max_days_overdue_open"] == 1.0
    assert tomorrow["months_since_late"] == pytest.approx(1 / 30.4375)


def test_an_invoice_left_open_longer_than_the_customer_ever_paid_late_stands_out():
    d = pd.Timestamp
    inv = pd.DataFrame({
        "invoice_id": ["a", "b", "c", "d", "e"],
        "customer_id": ["STOPPED", "STOPPED", "STOPPED", "STOPPED", "PAYING"],
        # paid 200 days late 13 months ago (outside the year); 10 days late 2 months ago; two open
        "issue_date": [d("2022-10-01"), d("2024-03-01"), d("2024-04-01"), d("2024-06-01"), d("2024-03-01")],
        "due_date": [d("2022-11-01"), d("2024-04-01"), d("2024-05-06"), d("2024-07-01"), d("2024-04-01")],
        "amount": [100.0] * 5,
        "paid_date": [d("2023-05-20"), d("2024-04-11"), pd.NaT, pd.NaT, d("2024-05-01")],
        "paid_amount": np.nan, "disputed": False,
    })
    got = payment_features(inv, AS_OF)
    # open 40 days past due against a longest delay of 10 in the last 12 months; one is not due yet
    assert got.loc["STOPPED", "overdue_invoices_open"] == 1
    assert got.loc["STOPPED", "overdue_beyond_usual_days"] == 30
    assert got.loc["PAYING", "overdue_invoices_open"] == 0
    assert math.isnan(got.loc["PAYING", "overdue_beyond_usual_days"])


def test_undisputed_overdue_invoices_and_those_fallen_due_since_the_last_payment():
    d = pd.Timestamp
    inv = pd.DataFrame({
        "invoice_id": ["a", "b", "c", "d", "e", "f"],
        "customer_id": ["C1"] * 5 + ["NEVER_PAID"],
        "issue_date": [d("2024-03-01"), d("2024-03-10"), d("2024-04-01"), d("2024-04-15"), d("2024-05-01"),
                       d("2024-04-01")],
        # due 75, 60, 45, 30 and 15 days before as_of; the new customer's 45 days before
        "due_date": [d("2024-04-01"), d("2024-04-16"), d("2024-05-01"), d("2024-05-16"), d("2024-05-31"),
                     d("2024-05-01")],
        "amount": [100.0] * 6,
        # b paid on 2024-04-20: a (due before it) and c, d, e (due after it) are open
        "paid_date": [pd.NaT, d("2024-04-20"), pd.NaT, pd.NaT, pd.NaT, pd.NaT],
        "paid_amount": np.nan,
        "disputed": [False, False, True, False, False, False],
    })
    got = payment_features(inv, AS_OF)
    c1 = got.loc["C1"]
    assert c1["overdue_invoices_open"] == 4
    assert c1["overdue_invoices_undisputed"] == 3           # a, d, e; c is disputed
    assert c1["overdue_days_undisputed_max"] == 75          # a
    assert c1["overdue_days_undisputed_sum"] == 75 + 30 + 15
    assert c1["second_oldest_overdue_days"] == 45           # c counts: disputed or not, it is open
    assert c1["overdue_since_payment"] == 3                 # c, d, e
    new = got.loc["NEVER_PAID"]
    assert new["overdue_since_payment"] == 1 and new["second_oldest_overdue_days"] == 0
    assert new["overdue_days_undisputed_sum"] == 45
