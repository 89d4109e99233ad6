"""The scorecard's points must add up: total = offset - factor * logit(PD), on every fit."""

import numpy as np
import pandas as pd
import pytest

from riskcast.config import ScorecardConfig
from riskcast.training.scorecard import CreditScorecard, points_scale


def _data(seed: int, n: int = 6000):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"lev": rng.uniform(0, 1.5, n), "dbt": rng.exponential(10, n), "cr": rng.lognormal(0, 0.5, n)})
    X.loc[rng.random(n) < 0.1, "cr"] = np.nan
    logit = -4 + 2 * X["lev"] + 0.05 * X["dbt"] - 0.5 * X["cr"].fillna(1)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@pytest.mark.parametrize("seed, cfg", [
    (1, ScorecardConfig()),
    (2, ScorecardConfig(base_points=500, base_odds=20, pdo=40)),
    (3, ScorecardConfig(max_n_bins=4)),
])
def test_points_add_up_to_the_logit(seed, cfg):
    X, y = _data(seed)
    sc = CreditScorecard({"lev": "ascending", "dbt": "ascending", "cr": "descending"}, cfg).fit(X, y)
    offset, factor = points_scale(cfg)
    logit = sc.logit(X)
    by_feature = sc.points_by_feature(X)
    np.testing.assert_allclose(by_feature.sum(axis=1), offset - factor * logit, atol=1e-8)
    # and optbinning's own total agrees with ours
    np.testing.assert_allclose(sc.scorecard_.score(X), offset - factor * logit, atol=1e-6)
    # base points at base odds: PD = 1 / (1 + odds) scores exactly base_points
    assert offset - factor * np.log(1 / cfg.base_odds) == pytest.approx(cfg.base_points)


def test_monotonic_trends_and_best_bins():
    X, y = _data(4)
    sc = CreditScorecard({"lev": "ascending", "dbt": "ascending", "cr": "descending"}).fit(X, y)
    grid = pd.DataFrame({"lev": np.linspace(0, 1.5, 50), "dbt": 5.0, "cr": 1.0})
    pd_ = sc.predict_pd(grid)
    assert np.all(np.diff(pd_) >= -1e-12)  # risk never falls as leverage rises
    points = sc.points_by_feature(X)
    assert np.all(points <= sc.best_points_ + 1e-9)  # no row beats a feature's best bin


def test_refit_forgets_the_old_fit():
    X, y = _data(5)
    sc = CreditScorecard({"lev": "ascending", "dbt": "ascending", "cr": "descending"})
    first = sc.fit(X, y).coef_.copy()
    X2, y2 = _data(6)
    assert not np.allclose(sc.fit(X2, y2).coef_, first)


def test_woe_regression_matches_scikit_learn_when_signs_agree_and_zeroes_a_reversed_feature():
    from sklearn.linear_model import LogisticRegression

    from riskcast.training.scorecard import WoELogisticRegression

    rng = np.random.default_rng(2)
    a = rng.normal(size=20_000)
    b = a + 0.5 * rng.normal(size=a.size)          # a noisy copy of a
    c = rng.normal(size=a.size)
    X = np.column_stack([a, b, c])
    y = (rng.random(a.size) < 1 / (1 + np.exp(-(-3.0 - 0.8 * a - 0.5 * c)))).astype(int)
    ours = WoELogisticRegression(C=1.0).fit(X[:, [0, 2]], y)
    ref = LogisticRegression(C=1.0, max_iter=1000).fit(X[:, [0, 2]], y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-3)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=2e-3)
    np.testing.assert_allclose(ours.predict_proba(X[:, [0, 2]]), ref.predict_proba(X[:, [0, 2]]), atol=1e-3)
    # b alone lowers risk like a, but given a it raises it: scikit-learn gives it a positive
    # coefficient (points against its own bins), ours holds it at 0
    y = (rng.random(a.size) < 1 / (1 + np.exp(-(-3.0 - 1.2 * a + 0.6 * b - 0.5 * c)))).astype(int)
    free = LogisticRegression(C=1.0, max_iter=1000).fit(X, y).coef_.ravel()
    held = WoELogisticRegression(C=1.0).fit(X, y).coef_.ravel()
    assert free.max() > 0 and np.all(held <= 0) and held.max() == 0.0
