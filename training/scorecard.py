"""The transparent scorecard: optbinning WoE bins, logistic regression, points.

optbinning does the binning and the scaling; this wrapper adds what a credit team needs
beside it: per-feature points (for reason codes), the best points each feature can give, and
the invariant ``total points = offset - factor * logit(PD)`` that the tests check.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin

from riskcast.config import ScorecardConfig
from riskcast.env import quiet

from .categories import category_text


#: the WoE a missing value takes (optbinning's ``metric_missing``), and so an unseen category
#: (its ``cat_unknown``): the policy of ``categories``, a category not seen at fit is missing
MISSING_WOE = 0.0


def quiet_solvers():
    """cvxpy (imported by optbinning) logs a harmless HIGHS import error; keep it from users.

    Only needed where optbinning is first imported: fitting, and loading a fitted scorecard.
    """
    return quiet("__cvxpy__", stderr=True)


def points_scale(cfg: ScorecardConfig) -> tuple[float, float]:
    """``(offset, factor)`` with points = offset - factor * ln(odds of default)."""
    factor = cfg.pdo / np.log(2.0)
    offset = cfg.base_points - factor * np.log(cfg.base_odds)
    return float(offset), float(factor)


def logit_to_points(logit: np.ndarray, cfg: ScorecardConfig) -> np.ndarray:
    offset, factor = points_scale(cfg)
    return offset - factor * np.asarray(logit, dtype=float)


class WoELogisticRegression(ClassifierMixin, BaseEstimator):
    """L2-penalised logistic regression on WoE columns with every coefficient <= 0.

    optbinning's WoE is ln(share of non-defaults / share of defaults): a riskier bin has a lower
    WoE, so a feature can only push the PD the way its own bins say when its coefficient is
    negative. Unconstrained, correlated features (days beyond terms over 3 and 12 months) take
    opposite signs and some customers' points then fall as they pay later; here such a
    feature gets 0 instead. ``C`` is the inverse penalty, as in scikit-learn.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X, y, sample_weight=None) -> "WoELogisticRegression":
        X = np.asarray(X, dtype=float)
        t = np.asarray(y, dtype=float)
        w8 = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        k = X.shape[1]

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = X @ w[:k] + w[k]
            loss = np.sum(w8 * (np.logaddexp(0.0, z) - t * z)) + 0.5 / self.C * np.dot(w[:k], w[:k])
            g = w8 * (expit(z) - t)
            return float(loss), np.concatenate([X.T @ g + w[:k] / self.C, [g.sum()]])

        start = np.zeros(k + 1)
        start[k] = np.log(max(t.mean(), 1e-6) / max(1 - t.mean(), 1e-6))
        res = minimize(objective, start, jac=True, method="L-BFGS-B",
                       bounds=[(None, 0.0)] * k + [(None, None)], options={"maxiter": self.max_iter})
        self.coef_ = res.x[:k].reshape(1, -1)
        self.intercept_ = np.array([res.x[k]])
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = k
        self.n_iter_ = np.array([res.nit])
        return self

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X, dtype=float) @ self.coef_.ravel() + self.intercept_[0]

    def predict_proba(self, X) -> np.ndarray:
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)


class CreditScorecard:
    """WoE scorecard with monotonic bins per feature (``trends``: optbinning monotonic_trend).

    The ``categorical`` features are binned as categories (optbinning's ``dtype="categorical"``:
    categories of like default rate share a bin); their values are read as text
    (``categories.category_text``). A category not seen at fit takes the WoE of a missing
    value, ``MISSING_WOE`` (optbinning's ``cat_unknown``), as the model treats it as missing.
    """

    #: (a scorecard pickled before categorical features reads this: none)
    categorical: tuple[str, ...] = ()

    def __init__(self, trends: Mapping[str, str], config: ScorecardConfig | None = None, random_state: int = 0,
                 categorical: Sequence[str] = ()) -> None:
        self.trends = dict(trends)
        self.config = config or ScorecardConfig()
        self.random_state = random_state
        self.categorical = tuple(categorical)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> "CreditScorecard":
        with quiet_solvers():
            from optbinning import BinningProcess, Scorecard

            names = list(self.trends)
            unknown = [n for n in self.categorical if n not in self.trends]
            if unknown:
                raise ValueError(f"categorical features {unknown} have no trend (every feature needs one)")
            params = {n: {"monotonic_trend": t, "max_n_bins": self.config.max_n_bins} for n, t in self.trends.items()}
            for n in self.categorical:
                params[n]["cat_unknown"] = MISSING_WOE
            bp = BinningProcess(names, categorical_variables=list(self.categorical) or None,
                                binning_fit_params=params)
            sc = Scorecard(
                binning_process=bp,
                estimator=WoELogisticRegression(C=1.0, max_iter=1000),
                scaling_method="pdo_odds",
                scaling_method_params={"pdo": self.config.pdo, "odds": self.config.base_odds,
                                       "scorecard_points": self.config.base_points},
                rounding=False,
                verbose=False,
            )
            sc.fit(self._known(self._text(X[names])), np.asarray(y))
        self.scorecard_ = sc
        self.feature_names_in_ = names
        self.offset_, self.factor_ = points_scale(self.config)
        lr = sc.estimator_
        self.coef_ = lr.coef_.ravel().copy()
        self.intercept_ = float(lr.intercept_[0])
        table = sc.table(style="detailed")
        self.best_points_ = (
            table[table["Count"] > 0].groupby("Variable")["Points"].max().reindex(names).to_numpy()
        )
        self.table_ = table
        return self

    def _known(self, X: pd.DataFrame) -> pd.DataFrame:
        """A feature missing on every training row (its source absent from the data: a ledger
        without statements) as one constant value: optbinning cannot bin nothing, and a single
        bin holding every row has WoE 0, so the feature gives no points, whatever it holds later."""
        empty = [n for n in X.columns if X[n].isna().all()]
        if not empty:
            return X
        return X.assign(**{n: ("" if n in self.categorical else 0.0) for n in empty})

    def _text(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` with the categorical features' values as text, as they are binned."""
        if not self.categorical:
            return X
        out = X.copy()
        for n in self.categorical:
            out[n] = category_text(X[n])
        return out

    def _woe(self, X: pd.DataFrame) -> np.ndarray:
        X = self._text(X[self.feature_names_in_])
        return np.asarray(self.scorecard_.binning_process_.transform(X, metric="woe", metric_missing=MISSING_WOE),
                          dtype=float)

    def logit(self, X: pd.DataFrame) -> np.ndarray:
        return self._woe(X) @ self.coef_ + self.intercept_

    def predict_pd(self, X: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(X)))

    def points_by_feature(self, X: pd.DataFrame) -> np.ndarray:
        """Points each feature contributes, per row; rows sum to ``offset - factor * logit``."""
        n = len(self.feature_names_in_)
        return self.offset_ / n - self.factor_ * (self._woe(X) * self.coef_ + self.intercept_ / n)

    def score(self, X: pd.DataFrame) -> np.ndarray:
        return self.points_by_feature(X).sum(axis=1)
