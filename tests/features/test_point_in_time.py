"""Leakage tests: a feature on as_of must not change when facts after as_of are added or removed."""

import dataclasses

import pandas as pd
import pytest

from riskcast.features.build import build_features, features_at, parse_as_of
from riskcast.features.payment import payment_features
from riskcast.features.registry import default_registry
from riskcast.errors import InputError


@pytest.mark.parametrize("as_of", ["2023-07-01", "2024-10-01"])
def test_features_ignore_every_later_fact(small_book, as_of):
    as_of = pd.Timestamp(as_of)
    reg = default_registry()
    full = features_at(small_book, as_of, reg)
    seen = features_at(small_book.as_seen_on(as_of), as_of, reg)
    pd.testing.assert_frame_equal(full.reset_index(drop=True), seen.reset_index(drop=True))


def _change_later_facts(t, as_of: pd.Timestamp):
    """Every fact dated after as_of changed: amounts, ratios, rates, payment and default dates."""
    inv = t.invoices.copy()
    later = inv["issue_date"] > as_of
    inv.loc[later, "amount"] *= 7.0
    inv.loc[later, "disputed"] = ~inv.loc[later, "disputed"]
    paid_later = inv["paid_date"] > as_of
    inv.loc[paid_later, "paid_date"] += pd.Timedelta(days=45)
    fs = t.financial_statements.copy()
    filed_later = fs["filed_date"] > as_of
    money = fs.columns.drop(["customer_id", "period_end", "filed_date"])
    fs.loc[filed_later, money] = fs.loc[filed_later, money] * 3.0
    sig = t.industry_signals.copy()
    published_later = sig["month"] >= as_of.to_period("M").to_timestamp()
    sig.loc[published_later, "default_rate"] = 0.5
    sig.loc[published_later, "growth_index"] *= 2.0
    d = t.defaults.copy()
    d.loc[d["default_date"] > as_of, "default_date"] += pd.Timedelta(days=30)
    assert later.any() and paid_later.any() and filed_later.any() and published_later.any()
    return dataclasses.replace(t, invoices=inv, financial_statements=fs, industry_signals=sig, defaults=d)


@pytest.mark.parametrize("as_of", ["2023-07-01", "2024-10-01"])
def test_features_ignore_every_change_to_later_facts(small_book, as_of):
    as_of = pd.Timestamp(as_of)
    reg = default_registry()
    full = features_at(small_book, as_of, reg)
    changed = features_at(_change_later_facts(small_book, as_of), as_of, reg)
    pd.testing.assert_frame_equal(full, changed)


def test_one_row_per_customer_and_date_in_registry_order(small_book):
    reg = default_registry()
    df = build_features(small_book, parse_as_of("2024-01-01,2024-04-01"), reg)
    assert not df.duplicated(["customer_id", "as_of"]).any()
    cols = [c for c in df.columns if c in reg]
    assert cols == reg.names
    for f in reg.features:
        v = df[f.name].dropna()
        assert v.between(f.valid_min, f.valid_max).all(), f.name


def test_open_invoice_counts_days_late_so_far():
    inv = pd.DataFrame({
        "invoice_id": ["a", "b"], "customer_id": ["C1", "C1"],
        "issue_date": pd.to_datetime(["2024-01-01", "2024-02-01"]),
        "due_date": pd.to_datetime(["2024-01-31", "2024-03-02"]),
        "amount": [100.0, 300.0],
        "paid_date": pd.to_datetime(["2024-02-10", "2024-06-01"]),
        "paid_amount": [100.0, 300.0], "disputed": [False, False],
    })
    f = payment_features(inv, pd.Timestamp("2024-04-01")).loc["C1"]
    # a: paid 10 days late; b: still open on 2024-04-01, 30 days past due
    assert f["dbt_mean_12m"] == pytest.approx(20.0)
    assert f["dbt_max_12m"] == pytest.approx(30.0)
    assert f["open_receivables"] == pytest.approx(300.0)
    assert f["overdue_share_open"] == pytest.approx(1.0)
    assert f["max_days_overdue_open"] == pytest.approx(30.0)


def test_defaulted_customers_leave_the_book(small_book):
    d = small_book.defaults.iloc[0]
    after = features_at(small_book, d["default_date"] + pd.Timedelta(days=1), default_registry())
    assert d["customer_id"] not in set(after["customer_id"])


@pytest.mark.parametrize("bad", ["2024-13-01", "yesterday", ""])
def test_bad_as_of_is_named(bad):
    with pytest.raises(InputError, match="as_of"):
        parse_as_of(bad)


def test_no_invoice_known_yet_gives_the_columns_not_a_crash(small_book):
    f = payment_features(small_book.invoices, pd.Timestamp("1990-01-01"))
    assert f.empty and {"dbt_mean_3m", "open_receivables", "overdue_share_open"} <= set(f.columns)


def test_training_fills_exactly_what_the_registry_declares(small_book):
    """The computed table and the training table differ only by the registry's declared fills,
    the same ``fill`` order entry's rows follow."""
    as_of = pd.Timestamp("2024-01-01")
    reg = default_registry()
    raw = features_at(small_book, as_of, reg, fill=False)
    filled = features_at(small_book, as_of, reg)
    pd.testing.assert_frame_equal(reg.fill(raw), filled)
    numbers = [c for c in filled.columns if c not in ("customer_id", "as_of", "industry")]
    changed = {c for c in numbers if not raw[c].equals(filled[c])}
    facts = {s.name for s in reg.fill_steps if s.name not in reg}
    assert changed == set(reg.filled) | facts
    assert not filled[sorted(changed - {"months_since_late"})].isna().any().any()
    # never late: as long ago as the relationship
    never = raw["months_since_late"].isna()
    assert never.sum() > 20
    assert filled.loc[never, "months_since_late"].equals(filled.loc[never, "relationship_months"])
    # a customer without an invoice yet has no payment value but what the fills give
    invoiced = raw["customer_id"].isin(payment_features(small_book.invoices, as_of).index)
    payment = [f.name for f in reg.features if f.source == "payment_history"]
    assert (~invoiced).sum() >= 3 and raw.loc[~invoiced, payment].isna().all().all()
    assert filled.loc[~invoiced, "invoices_12m"].eq(0.0).all()
