"""Reasons explain themselves: a missing source is one reason with its action, both paths alike."""

import numpy as np

from riskcast.features.registry import SOURCES, default_registry
from riskcast.serving.reasons import reason_columns, top_reasons

REG = default_registry()
STATEMENTS = [j for j, f in enumerate(REG.features) if f.source == "financial_statements"]


def _both(impact, values, k=4):
    rows = top_reasons(impact, values, REG, k)
    cols = reason_columns(impact, values, REG, k)
    for i, row in enumerate(rows):
        texts = [r["text"] for r in row] + [None] * (k - len(row))
        names = [r["feature"] for r in row] + [None] * (k - len(row))
        assert [cols[f"reason_{p + 1}"][i] for p in range(k)] == texts
        assert [cols[f"reason_{p + 1}_feature"][i] for p in range(k)] == names
    return rows


def test_missing_statements_are_one_reason_ranked_by_their_summed_impact():
    values = np.full((1, len(REG)), 1.0)
    values[0, STATEMENTS] = np.nan
    impact = np.zeros((1, len(REG)))
    impact[0, STATEMENTS] = 0.05                          # 21 x 0.05 = 1.05, above any single one
    impact[0, REG.names.index("dbt_mean_3m")] = 0.8
    impact[0, REG.names.index("invoices_12m")] = 0.3
    (row,) = _both(impact, values)
    assert [r["feature"] for r in row] == ["financial_statements", "dbt_mean_3m", "invoices_12m"]
    assert row[0]["text"] == "No financial statements on file: ask for the last annual accounts"
    assert row[0]["value"] is None and row[0]["impact"] == round(0.05 * len(STATEMENTS), 4)


def test_a_partly_missing_source_gets_its_partial_sentence_and_a_known_value_its_own():
    values = np.full((1, len(REG)), 2.0)
    values[0, REG.names.index("revenue_growth")] = np.nan
    impact = np.zeros((1, len(REG)))
    impact[0, REG.names.index("revenue_growth")] = 0.4
    impact[0, REG.names.index("current_ratio")] = 0.2
    (row,) = _both(impact, values)
    assert row[0]["feature"] == "financial_statements"
    assert row[0]["text"] == SOURCES["financial_statements"].partial
    assert row[1]["text"] == "Current assets cover short-term debts only 2.00 times"


def test_missing_features_that_lower_the_risk_give_no_reason():
    values = np.full((1, len(REG)), 1.0)
    values[0, STATEMENTS] = np.nan
    impact = np.zeros((1, len(REG)))
    impact[0, STATEMENTS[:3]] = 0.3
    impact[0, STATEMENTS[3:]] = -0.1                      # summed: below zero
    assert _both(impact, values) == [[]]


def test_a_value_missing_by_meaning_is_never_a_reason():
    values = np.full((1, len(REG)), 1.0)
    j = REG.names.index("overdue_beyond_usual_days")
    values[0, j] = np.nan
    impact = np.zeros((1, len(REG)))
    impact[0, j] = 0.5
    assert _both(impact, values) == [[]]


def test_the_log_features_speak_in_money():
    values = np.full((2, len(REG)), 1.0)
    impact = np.zeros((2, len(REG)))
    for name in ("log_total_assets", "log_revenue"):
        values[:, REG.names.index(name)] = np.log1p([1_234_567.0, 80_000.0])
        impact[:, REG.names.index(name)] = 0.5
    rows = _both(impact, values)
    assert rows[0][0]["text"] == "Small balance sheet: total assets of 1,234,567"
    assert rows[1][1]["text"] == "Small turnover: annual revenue of 80,000"


def test_book_and_order_paths_agree_on_random_books():
    rng = np.random.default_rng(7)
    n = 4000
    values = rng.gamma(2.0, 2.0, size=(n, len(REG)))
    values[np.ix_(rng.random(n) < 0.4, STATEMENTS)] = np.nan
    values[rng.random(values.shape) < 0.1] = np.nan
    values[:, REG.names.index("dbt_mean_3m")] = np.round(values[:, REG.names.index("dbt_mean_3m")])  # repeats
    impact = rng.normal(0, 0.2, size=(n, len(REG)))
    rows = _both(impact, values)
    texts = [r["text"] for row in rows for r in row]
    assert not any("not available" in t for t in texts)
    assert sum(t == SOURCES["financial_statements"].absent for t in texts) > 100
    for row in rows:
        names = [r["feature"] for r in row]
        assert len(names) == len(set(names))


def test_a_filled_value_of_a_source_not_held_is_the_source_s_reason():
    """A customer without invoices has 0 of them and was never late only by the registry's
    fills: that is no payment history, one reason with its action, not "Only 0 invoices"."""
    inv, msl = REG.names.index("invoices_12m"), REG.names.index("months_since_late")
    values = np.full((2, len(REG)), np.nan)
    values[:, STATEMENTS] = 1.0
    values[:, REG.names.index("relationship_months")] = 1.0
    values[:, [inv, msl]] = [0.0, 1.0]                       # what the fills give a new customer
    values[1, REG.names.index("dbt_mean_12m")] = 2.0         # the second has a payment history
    impact = np.zeros((2, len(REG)))
    impact[:, inv], impact[:, msl] = 0.4, 0.3
    impact[:, REG.names.index("current_ratio")] = 0.2
    new, paying = _both(impact, values)
    assert [r["feature"] for r in new] == ["payment_history", "current_ratio"]
    assert new[0]["text"] == SOURCES["payment_history"].absent and new[0]["impact"] == 0.7
    # with a history, its 0 invoices in the last 12 months are a fact of its own
    assert [r["feature"] for r in paying] == ["invoices_12m", "months_since_late", "current_ratio"]
    assert paying[0]["text"] == "Only 0 invoices in the last 12 months"
    assert paying[1]["text"] == "Never late, but trading with us for only 30 days"


def test_a_customer_never_late_is_not_told_of_a_late_payment():
    """``months_since_late`` of a customer never late is its relationship's length (the fill):
    its reason says so, on both paths, instead of quoting a late payment that never was."""
    msl, rel = REG.names.index("months_since_late"), REG.names.index("relationship_months")
    values = np.full((3, len(REG)), 1.0)
    values[:, rel] = [4.0, 4.0, 30.0]
    values[:, msl] = [4.0, 2.0, 30.0]      # never late, late two months ago, never late
    impact = np.zeros((3, len(REG)))
    impact[:, msl] = 0.3
    never, late, long_never = (row[0]["text"] for row in _both(impact, values))
    assert never == "Never late, but trading with us for only 122 days"
    assert late == "Last late payment only 61 days ago"
    assert long_never == "Never late, but trading with us for only 913 days"
