"""The synthetic book: valid tables, deterministic, and defaults caused by the latent quality."""

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from riskcast.config import GeneratorConfig
from riskcast.data.schema import ALL_TABLES, validate_table
from riskcast.data.synthetic import RECESSION_INDUSTRIES, generate_book


def _labelled_truth(book):
    first = book.defaults.groupby("customer_id")["default_date"].min()
    t = book.truth.copy()
    d = t["customer_id"].map(first)
    t["y"] = ((d > t["as_of"]) & (d <= t["as_of"] + pd.DateOffset(months=12))).astype(int)
    return t


def test_every_table_meets_its_contract(small_book):
    for name, df in small_book.items():
        validate_table(ALL_TABLES[name], df)


def test_same_seed_same_book_other_seed_other_book():
    a = generate_book(GeneratorConfig(customers=300, seed=3))
    b = generate_book(GeneratorConfig(customers=300, seed=3))
    c = generate_book(GeneratorConfig(customers=300, seed=4))
    for (name, x), (_, y) in zip(a.items(), b.items()):
        pd.testing.assert_frame_equal(x, y, obj=name)
    assert not a.invoices["amount"].equals(c.invoices["amount"])


def test_balance_sheets_add_up(small_book):
    s = small_book.financial_statements
    np.testing.assert_allclose(s["total_assets"], s["total_liabilities"] + s["equity"], rtol=1e-9)
    np.testing.assert_allclose(s["current_assets"], s["cash"] + s["receivables"] + s["inventory"], rtol=1e-9)
    assert ((s["filed_date"] - s["period_end"]).dt.days.between(60, 180)).all()


def test_default_rate_is_realistic(small_book):
    t = _labelled_truth(small_book)
    assert 0.01 <= t["y"].mean() <= 0.03


def test_truth_is_strong_but_not_trivial_and_calibrated(small_book):
    t = _labelled_truth(small_book)
    assert 0.75 <= roc_auc_score(t["y"], t["pd_12m"]) <= 0.92
    assert 0.67 < t["pd_12m"].mean() / t["y"].mean() < 1.5
    assert t.loc[t["y"] == 1, "pd_12m"].mean() > 2 * t.loc[t["y"] == 0, "pd_12m"].mean()


def test_defaulters_pay_later_before_they_default(small_book):
    inv = small_book.invoices.merge(small_book.defaults[["customer_id", "default_date"]], on="customer_id", how="left")
    paid = inv.dropna(subset=["paid_date"])
    late = (paid["paid_date"] - paid["due_date"]).dt.days.clip(lower=0)
    before = paid["default_date"].notna() & (paid["default_date"] - paid["issue_date"]).dt.days.between(90, 365)
    assert late[before].mean() > 1.5 * late[paid["default_date"].isna()].mean()


def test_nothing_happens_after_a_default(small_book):
    d = small_book.defaults.set_index("customer_id")["default_date"]
    inv = small_book.invoices
    assert not (inv["issue_date"] >= inv["customer_id"].map(d)).any()
    assert not (inv["paid_date"] >= inv["customer_id"].map(d)).any()
    st = small_book.financial_statements
    assert not (st["filed_date"] >= st["customer_id"].map(d)).any()


def test_recession_hits_the_chosen_industries_in_the_last_year():
    base = generate_book(GeneratorConfig(customers=300, seed=5))
    rec = generate_book(GeneratorConfig(customers=300, seed=5, scenario="recession"))
    last = base.industry_signals["month"] >= base.industry_signals["month"].max() - pd.DateOffset(months=5)
    hit = base.industry_signals["industry"].isin(RECESSION_INDUSTRIES) & last
    assert (rec.industry_signals.loc[hit, "default_rate"].to_numpy() > base.industry_signals.loc[hit, "default_rate"].to_numpy()).all()
    assert rec.industry_signals.loc[hit, "growth_index"].mean() < base.industry_signals.loc[hit, "growth_index"].mean()
    spared = ~base.industry_signals["industry"].isin(RECESSION_INDUSTRIES)
    pd.testing.assert_series_equal(base.industry_signals.loc[spared, "default_rate"], rec.industry_signals.loc[spared, "default_rate"])
