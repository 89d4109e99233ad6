import numpy as np
import pytest

from riskcast.config import PolicyConfig
from riskcast.serving.policy import PolicyInputs, apply_policy, credit_limit


def _x(**over):
    base = dict(band="B", revenue=1_000_000.0, operating_cash_flow=np.nan, amount_12m=120_000.0,
                open_receivables=10_000.0, max_days_overdue_open=0.0, relationship_months=12.0,
                order_amount=5_000.0, requested_terms_days=np.nan, refer_reason=None)
    base.update(over)
    return PolicyInputs(**{k: np.array([v], dtype=object if k in ("band", "refer_reason") else float)
                           for k, v in base.items()})


CFG = PolicyConfig()


def test_limit_is_a_band_share_of_revenue():
    assert credit_limit(_x(), CFG)[0] == pytest.approx(0.10 * 1_000_000)
    assert credit_limit(_x(band="A"), CFG)[0] == pytest.approx(0.15 * 1_000_000)


def test_limit_is_capped_by_monthly_operating_cash_flow():
    assert credit_limit(_x(operating_cash_flow=120_000.0), CFG)[0] == pytest.approx(0.30 * 10_000)
    # burning cash: no open credit; the order is asked to be prepaid
    x = _x(operating_cash_flow=-50_000.0, relationship_months=30.0)
    assert credit_limit(x, CFG)[0] == 0
    out = apply_policy(x, CFG)
    assert out.decision[0] == "approve_with_conditions" and "prepayment" in out.conditions[0][0]


def test_new_customer_gets_at_most_half_its_first_order():
    lim = credit_limit(_x(amount_12m=0.0, open_receivables=0.0, relationship_months=0.0, order_amount=40_000.0), CFG)[0]
    assert lim == pytest.approx(20_000)


def test_loyal_customer_without_overdue_gets_the_uplift():
    assert credit_limit(_x(relationship_months=30.0), CFG)[0] == pytest.approx(0.10 * 1_000_000 * 1.2)
    assert credit_limit(_x(relationship_months=30.0, max_days_overdue_open=3.0), CFG)[0] == pytest.approx(100_000)


def test_without_statements_the_limit_follows_trading_history():
    lim = credit_limit(_x(revenue=np.nan), CFG)[0]
    assert 0 < lim < 120_000


@pytest.mark.parametrize("over, decision", [
    ({}, "approve"),
    ({"band": "E"}, "decline"),
    ({"max_days_overdue_open": 45.0}, "decline"),
    ({"refer_reason": "fallback in use"}, "refer"),
    ({"band": "D"}, "approve_with_conditions"),
    ({"order_amount": 95_000.0}, "refer"),                    # 105k against 100k: within the 10% margin
    ({"order_amount": 300_000.0}, "approve_with_conditions"),  # far over the limit: prepay the excess
])
def test_decisions(over, decision):
    out = apply_policy(_x(**over), CFG)
    assert out.decision[0] == decision, out.explanation[0]
    if decision == "approve_with_conditions":
        assert out.conditions[0]


def test_terms_follow_the_band_and_never_exceed_the_request():
    assert apply_policy(_x(band="A"), CFG).terms_days[0] == 90
    assert apply_policy(_x(band="A", requested_terms_days=30.0), CFG).terms_days[0] == 30
    assert apply_policy(_x(band="C", requested_terms_days=90.0), CFG).terms_days[0] == 30


def test_book_review_without_an_order_refers_over_limit_customers():
    out = apply_policy(_x(order_amount=0.0, open_receivables=150_000.0), CFG)
    assert out.decision[0] == "refer" and out.conditions[0] == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_book_decided_column_by_column_equals_order_by_order(seed):
    rng = np.random.default_rng(seed)
    n = 5000
    x = PolicyInputs(
        band=rng.choice(np.array(list("ABCDE"), dtype=object), n),
        revenue=np.where(rng.random(n) < 0.2, np.nan, rng.lognormal(13, 1.5, n)),
        operating_cash_flow=np.where(rng.random(n) < 0.5, np.nan, rng.normal(1e5, 3e5, n)),
        amount_12m=np.select([rng.random(n) < 0.1, rng.random(n) < 0.02], [0.0, np.nan], rng.lognormal(11, 1.5, n)),
        open_receivables=np.where(rng.random(n) < 0.1, 0.0, rng.lognormal(10, 1.5, n)),
        max_days_overdue_open=np.where(rng.random(n) < 0.7, 0.0, rng.integers(1, 90, n)).astype(float),
        relationship_months=rng.uniform(0, 60, n),
        order_amount=np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(9, 1.5, n)),
        requested_terms_days=np.where(rng.random(n) < 0.5, np.nan, rng.choice([0.0, 30.0, 60.0, 90.0], n)),
        refer_reason=np.where(rng.random(n) < 0.1, "fallback in use: model error", None).astype(object),
    )
    explained, book = apply_policy(x, CFG), apply_policy(x, CFG, explain=False)
    assert list(book.decision) == list(explained.decision)
    assert set(book.decision) == {"approve", "approve_with_conditions", "refer", "decline"}
    np.testing.assert_array_equal(book.credit_limit, explained.credit_limit)
    np.testing.assert_array_equal(book.terms_days, explained.terms_days)
    np.testing.assert_array_equal(book.exposure, explained.exposure)
