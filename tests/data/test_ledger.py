"""What a ledger alone tells, on hand-made ledgers whose every figure is worked out here: the
default label from severe delinquency, part payments, customers the customers table lacks,
and disputes known only from their date."""

import numpy as np
import pandas as pd
import pytest

from riskcast.config import LabelConfig
from riskcast.data.io import read_tables
from riskcast.data.ledger import ledger_defaults
from riskcast.errors import DataValidationError
from riskcast.features.build import build_features

T = pd.Timestamp


def _invoices(rows) -> pd.DataFrame:
    cols = ["invoice_id", "customer_id", "issue_date", "due_date", "amount", "paid_date", "paid_amount",
            "disputed", "dispute_date", "written_off_date"]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("issue_date", "due_date", "paid_date", "dispute_date", "written_off_date"):
        df[c] = pd.to_datetime(df[c])
    df["amount"] = df["amount"].astype(float)
    df["paid_amount"] = df["paid_amount"].astype(float)
    df["disputed"] = df["disputed"].astype(bool)
    return df


N = None


def test_ledger_defaults_against_a_hand_computed_ledger():
    # due 2024-01-01: 90 days past due on 2024-03-31, more than 90 (a default) from 2024-04-01
    inv = _invoices([
        ("I1", "A", "2023-12-01", "2024-01-01", 100, N, N, False, N, N),               # never paid
        ("I2", "B", "2023-12-01", "2024-01-01", 100, "2024-04-01", 100, False, N, N),  # paid on the day: too late
        ("I3", "C", "2023-12-01", "2024-01-01", 100, "2024-03-31", 100, False, N, N),  # paid 90 days late: no default
        ("I4", "D", "2023-12-01", "2024-01-01", 100, "2024-02-01", 60, False, N, N),   # 40 left open
        ("I5", "E", "2023-12-01", "2024-01-01", 100, N, N, False, N, "2024-02-15"),    # written off first
        ("I6", "F", "2024-11-01", "2024-12-01", 100, N, N, False, N, N),               # not 90 days yet
        ("I7", "F", "2025-01-15", "2025-02-14", 10, N, N, False, N, N),                # the ledger's last date
        ("I9", "H", "2023-12-01", "2024-01-01", 100, N, N, True, "2024-02-01", N),    # disputed: no default
        ("I10", "K", "2023-12-01", "2024-01-01", 100, N, N, True, "2024-06-01", N),   # disputed after it: one
        ("I8", "G", "2023-12-01", "2024-01-01", 100, "2024-02-01", 99.999, False, N, N),  # a rounding cent left
    ])
    got = ledger_defaults(inv).set_index("customer_id")
    assert got.index.tolist() == ["A", "B", "D", "E", "K"]
    assert got.loc["A", "default_date"] == got.loc["B", "default_date"] == got.loc["D", "default_date"] == T("2024-04-01")
    assert (got.loc["E", "default_date"], got.loc["E", "kind"]) == (T("2024-02-15"), "written_off")
    assert got.loc["A", "kind"] == "90dpd"
    # what is left of a part payment counts only above the minimum amount
    assert "D" not in ledger_defaults(inv, min_amount=50).set_index("customer_id").index
    # 60 days: F's invoice due 2024-12-01 is more than 60 days past due from 2025-01-31, after the
    # ledger's last date (2025-01-15): not known yet
    sixty = ledger_defaults(inv, days_past_due=60).set_index("customer_id")
    assert "F" not in sixty.index and sixty.loc["A", "default_date"] == T("2024-03-02")
    assert sixty.loc["A", "kind"] == "delinquent"


def _folder(tmp_path, invoices: pd.DataFrame, customers: pd.DataFrame | None = None):
    invoices.to_csv(tmp_path / "invoices.csv", index=False)
    if customers is not None:
        customers.to_csv(tmp_path / "customers.csv", index=False)
    return tmp_path


def test_a_part_payment_leaves_the_rest_open_and_overdue(tmp_path):
    inv = _invoices([
        ("I1", "A", "2024-01-01", "2024-01-31", 100, "2024-01-20", 60, False, N, N),
        ("I2", "A", "2024-02-01", "2024-03-02", 50, "2024-02-20", N, False, N, N),  # paid, no amount: in full
    ]).drop(columns="written_off_date")
    tables = read_tables(_folder(tmp_path, inv))
    row = build_features(tables, [T("2024-03-10")]).iloc[0]
    assert row["open_receivables"] == pytest.approx(40.0)
    assert row["overdue_amount_open"] == pytest.approx(40.0)
    assert row["overdue_invoices_open"] == 1 and row["max_days_overdue_open"] == 39
    # before the part payment the whole invoice was open, and not yet due
    before = build_features(tables, [T("2024-01-15")]).iloc[0]
    assert before["open_receivables"] == pytest.approx(100.0) and before["overdue_amount_open"] == 0


def test_invoices_of_a_customer_the_customers_table_lacks_are_counted_not_lost(tmp_path):
    inv = _invoices([
        ("I1", "A", "2024-01-01", "2024-01-31", 100, N, N, False, N, N),
        ("I2", "B", "2024-01-05", "2024-02-04", 300, N, N, False, N, N),
        ("I3", "B", "2024-01-06", "2024-02-05", 200, "2024-02-01", 200, False, N, N),
    ]).drop(columns=["written_off_date", "dispute_date"])
    customers = pd.DataFrame({"customer_id": ["A"], "industry": ["C"], "first_trade_date": ["2023-06-01"]})
    tables = read_tables(_folder(tmp_path, inv, customers))
    note = tables.notes.unknown_customers
    assert note == {"customers": 1, "invoices": 2, "amount": 500.0, "open_amount": 300.0, "examples": ["B"]}
    assert "1 customer(s) with invoices are not in the customers table" in "\n".join(tables.notes.lines())
    by_id = tables.customers.set_index("customer_id")
    assert by_id.loc["B", "industry"] == "unknown" and by_id.loc["B", "first_trade_date"] == T("2024-01-05")
    assert by_id.loc["A", "industry"] == "C"
    feats = build_features(tables, [T("2024-03-01")]).set_index("customer_id")
    assert feats["open_receivables"].sum() == pytest.approx(400.0)  # 100 of A and 300 of B: nothing lost


def test_a_dispute_is_seen_only_from_its_date(tmp_path):
    inv = _invoices([
        ("I1", "A", "2024-01-01", "2024-01-31", 100, "2024-04-10", 100, True, "2024-03-01", N),
        ("I2", "A", "2024-01-02", "2024-02-01", 100, "2024-04-10", 100, True, N, N),  # a flag without a date
        ("I3", "A", "2024-06-30", "2024-07-30", 10, N, N, False, N, N),  # the ledger's last date
    ]).drop(columns="written_off_date")
    tables = read_tables(_folder(tmp_path, inv))
    assert tables.notes.undated == {"date": "2024-06-30", "disputes": 1, "part_payments": 0}
    before, after, last = (build_features(tables, [T(d)]).iloc[0] for d in ("2024-02-15", "2024-03-15", "2024-06-30"))
    assert before["dispute_rate_12m"] == 0 and before["overdue_invoices_undisputed"] == 2
    assert after["dispute_rate_12m"] == pytest.approx(0.5) and after["overdue_invoices_undisputed"] == 1
    # the undated flag counts from the export on, never before
    assert last["dispute_rate_12m"] == pytest.approx(1.0) and last["overdue_invoices_undisputed"] == 0
    seen = tables.as_seen_on(T("2024-02-15")).invoices.set_index("invoice_id")
    assert not seen.loc["I1", "disputed"] and pd.isna(seen.loc["I1", "dispute_date"])


def test_the_label_source_is_chosen_and_said(tmp_path):
    inv = _invoices([
        ("I1", "A", "2024-01-01", "2024-01-31", 100, N, N, False, N, N),
        ("I2", "B", "2024-01-01", "2024-01-31", 100, "2024-02-05", 100, False, N, N),
        ("I3", "B", "2024-09-01", "2024-10-01", 100, N, N, False, N, N),
    ]).drop(columns="written_off_date")
    folder = _folder(tmp_path, inv)
    auto = read_tables(folder)
    assert auto.notes.label_source == "ledger" and "no defaults table" in auto.notes.label
    assert auto.defaults["customer_id"].tolist() == ["A"]
    assert auto.defaults["default_date"].tolist() == [T("2024-05-01")]
    with pytest.raises(DataValidationError, match='label.source is "defaults" but the data folder has no defaults'):
        read_tables(folder, label=LabelConfig(source="defaults"))
    pd.DataFrame({"customer_id": ["B"], "default_date": ["2024-08-01"], "kind": ["bankruptcy"]}).to_csv(
        folder / "defaults.csv", index=False)
    given = read_tables(folder)
    assert given.notes.label_source == "defaults" and given.defaults["customer_id"].tolist() == ["B"]
    forced = read_tables(folder, label=LabelConfig(source="ledger", days_past_due=30))
    assert forced.defaults["customer_id"].tolist() == ["A"] and forced.notes.label_source == "ledger"
    assert forced.defaults["default_date"].iloc[0] == T("2024-03-02") and np.all(forced.defaults["kind"] == "delinquent")
