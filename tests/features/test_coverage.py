"""The missing-features rule counts only what a customer of its kind can have."""

import math

import numpy as np
import pytest

from riskcast.features.coverage import coverage
from riskcast.features.registry import SOURCES, FeatureRegistry, default_registry

REG = default_registry()


def _row(**values: float) -> np.ndarray:
    x = np.full((1, len(REG)), np.nan)
    for name, v in values.items():
        x[0, REG.names.index(name)] = v
    return x


def _of(source: str) -> list[str]:
    return [f.name for f in REG.features if f.source == source]


def _plain_rule(x: np.ndarray, reg: FeatureRegistry) -> float:
    """The rule written out feature by feature, to check the tabulated one against."""
    held, counted, missing = set(), 0, 0
    for f, v in zip(reg.features, x):
        if not math.isnan(v) and not f.nan_means and f.fill is None:
            held.add(f.source)
    if not any(SOURCES[s].customer for s in held):
        return 1.0
    for f, v in zip(reg.features, x):
        if f.source in held or not SOURCES[f.source].customer:
            counted += 1
            missing += bool(math.isnan(v) and not f.nan_means and f.fill is None)
    return missing / counted


def test_a_new_customer_with_a_full_statement_misses_only_what_it_could_have():
    statement = {n: 1.0 for n in _of("financial_statements")}
    c = coverage(_row(**statement, relationship_months=0.0), REG)
    # statements and relationship known; the industry statistics (every customer's) missing;
    # payment history, which a new customer cannot have, not counted
    industry = len(_of("industry"))
    assert c.counted[0] == len(statement) + 1 + industry and c.missing[0] == industry
    assert c.share[0] == pytest.approx(industry / (len(statement) + 1 + industry))
    assert c.share[0] < 0.1


@pytest.mark.parametrize("values", [{}, {"relationship_months": 0.0},
                                    {"relationship_months": 3.0, "industry_default_rate_12m": 0.02,
                                     "industry_growth_12m": 0.01}])
def test_nothing_about_the_customer_is_all_missing(values):
    c = coverage(_row(**values), REG)
    assert c.share[0] == 1.0
    assert c.shortfall(0, 0.2) == "no financial statements and no payment history: too little to score"


def test_a_single_ratio_is_a_statement_with_almost_everything_missing():
    c = coverage(_row(current_ratio=1.2, relationship_months=0.0), REG)
    n = len(_of("financial_statements"))
    assert c.share[0] > 0.8
    text = c.shortfall(0, 0.2)
    assert text == f"{n - 1 + 2} of {n + 3} figures missing for a customer with financial statements (limit 20%)"


def test_a_value_missing_by_meaning_is_no_gap_and_holds_nothing():
    # "no invoice overdue" is a fact about a customer who has payment history, not a gap
    f = REG["overdue_beyond_usual_days"]
    assert f.nan_means and f.source == "payment_history"
    known = {n: 1.0 for n in _of("payment_history") + _of("industry") + _of("relationship") if n != f.name}
    assert coverage(_row(**known), REG).share[0] == 0.0
    # nor does its value alone tell that the customer has a payment history to judge
    assert coverage(_row(overdue_beyond_usual_days=4.0, relationship_months=5.0), REG).share[0] == 1.0


def _filled(x: np.ndarray) -> np.ndarray:
    """A row as order entry and training give it to the model: with the registry's fills."""
    row = dict(zip(REG.names, x[0].tolist()))
    row.update(REG.fill_row(row))
    return np.array([[row[n] for n in REG.names]])


def test_fills_are_no_evidence_of_the_source_they_fill():
    """0 invoices because there are none, never late because never invoiced: a new customer's
    filled row measures as its unfilled one, so a full statement still goes to the model and
    an empty request is still too little to score."""
    statement = {n: 1.0 for n in _of("financial_statements")}
    for values in ({**statement, "relationship_months": 0.0}, {"relationship_months": 0.0}, {}):
        bare = _row(**values)
        filled = _filled(bare)
        assert np.isnan(bare).sum() > np.isnan(filled).sum()  # the fills did fill
        a, b = coverage(bare, REG), coverage(filled, REG)
        assert a.code[0] == b.code[0] and a.share[0] == b.share[0]
        assert not b.held[0][[s.name for s in REG.sources].index("payment_history")]
    full = coverage(_filled(_row(**statement, relationship_months=0.0)), REG)
    assert full.share[0] < 0.1
    empty = coverage(_filled(_row(relationship_months=0.0)), REG)
    assert empty.share[0] == 1.0
    assert empty.shortfall(0, 0.2) == "no financial statements and no payment history: too little to score"
    # a filled value alone holds nothing, whatever it is
    assert coverage(_row(invoices_12m=12.0, months_since_late=3.0, overdue_amount_open=5.0,
                         relationship_months=5.0), REG).share[0] == 1.0


def test_a_filled_value_is_unknown_to_the_reasons_only_where_its_source_is_not_held():
    lay = REG.layout
    inv, msl = REG.names.index("invoices_12m"), REG.names.index("months_since_late")
    new = _filled(_row(current_ratio=1.0, relationship_months=2.0))
    unknown = lay.unknown(new)[0]
    assert unknown[inv] and unknown[msl]  # no payment history: its fills are that, not facts
    assert not unknown[REG.names.index("current_ratio")] and not unknown[REG.names.index("relationship_months")]
    assert (unknown == (np.isnan(new[0]) | lay.filled)).all()
    paying = _filled(_row(current_ratio=1.0, relationship_months=2.0, dbt_mean_12m=4.0))
    unknown = lay.unknown(paying)[0]
    assert not unknown[inv] and not unknown[msl]  # a payment history: its 0 invoices in 12 months are one
    assert (unknown == np.isnan(paying[0])).all()


def test_the_tabulated_rule_is_the_rule_on_random_rows():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, len(REG)))
    # whole sources absent, single gaps and empty rows, as books and requests have them
    for i, src in enumerate(["financial_statements", "payment_history", "industry", "relationship"]):
        cols = [REG.names.index(n) for n in _of(src)]
        X[np.ix_(rng.random(len(X)) < 0.3 + 0.1 * i, cols)] = np.nan
    X[rng.random(X.shape) < 0.08] = np.nan
    X[:20] = np.nan
    got = coverage(X, REG).share
    want = np.array([_plain_rule(x, REG) for x in X])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert (got == 1.0).sum() >= 20 and ((got > 0) & (got < 1)).any()


def test_a_user_table_is_one_source():
    reg = FeatureRegistry.for_table(["a", "b", "c", "d"])
    assert [s.name for s in reg.sources] == ["table"]
    X = np.array([[1.0, np.nan, np.nan, 2.0], [np.nan] * 4, [1.0, 2.0, 3.0, 4.0]])
    c = coverage(X, reg)
    np.testing.assert_array_equal(c.share, [0.5, 1.0, 0.0])
    assert c.shortfall(0, 0.25) == "2 of 4 figures missing for a customer with values in the table (limit 25%)"
