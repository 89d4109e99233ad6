"""The LightGBM PD model: monotone constraints from the registry, early stopping in time."""

from __future__ import annotations

from typing import Sequence

import lightgbm as lgb
import numpy as np

from riskcast.config import LightGBMConfig


def min_child_samples(params: LightGBMConfig, n_rows: int) -> int:
    """The configured rows per leaf, or n_rows / 2000 within [20, 100] when left to the data."""
    if params.min_child_samples is not None:
        return int(params.min_child_samples)
    return int(np.clip(n_rows // 2000, 20, 100))


class LightGBMPD:
    """Gradient-boosted trees predicting the log-odds of default.

    ``fit`` stops early on a validation window that lies between training and test in time.
    Column order is the registry's; ``predict_margin`` expects that order (LightGBM does not
    match columns by name). ``categorical_feature``: the columns holding category codes
    (``CategoryCodes``), split on natively; a missing code (an unseen category) goes where
    missing values go.
    """

    def __init__(self, params: LightGBMConfig, monotone_constraints: Sequence[int] | None = None, seed: int = 42,
                 categorical_feature: Sequence[int] = ()) -> None:
        self.params = params
        self.monotone_constraints = monotone_constraints
        self.seed = seed
        self.categorical_feature = categorical_feature

    def lgb_params(self, n_rows: int) -> dict:
        """LightGBM's own parameters for a training set of ``n_rows`` rows."""
        p = self.params
        out = {
            "objective": "binary",
            "learning_rate": p.learning_rate,
            "num_leaves": p.num_leaves,
            "min_data_in_leaf": min_child_samples(p, n_rows),
            "bagging_fraction": p.subsample,
            "bagging_freq": 1 if p.subsample < 1 else 0,
            "feature_fraction": p.colsample_bytree,
            "lambda_l2": p.reg_lambda,
            "num_threads": p.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }
        if self.monotone_constraints is not None and any(self.monotone_constraints):
            out["monotone_constraints"] = list(self.monotone_constraints)
            # "advanced" breaks the constraints on some rows (seen: PD falling as days beyond
            # terms rise); "intermediate" keeps them and ranks as well
            out["monotone_constraints_method"] = "intermediate"
        return out

    def fit(self, X: np.ndarray, y: np.ndarray, X_valid: np.ndarray | None = None, y_valid: np.ndarray | None = None,
            feature_names: Sequence[str] | None = None) -> "LightGBMPD":
        names = list(feature_names) if feature_names is not None else None
        cats = list(self.categorical_feature) or "auto"  # "auto" on a matrix: none
        dtrain = lgb.Dataset(X, label=y, feature_name=names or "auto", categorical_feature=cats, free_raw_data=True)
        callbacks = []
        valid_sets = []
        if X_valid is not None and y_valid is not None:
            valid_sets = [lgb.Dataset(X_valid, label=y_valid, reference=dtrain)]
            callbacks.append(lgb.early_stopping(self.params.early_stopping_rounds, verbose=False))
        params = self.lgb_params(len(y))
        self.min_child_samples_ = params["min_data_in_leaf"]
        self.booster_ = lgb.train(params, dtrain, num_boost_round=self.params.n_estimators,
                                  valid_sets=valid_sets, callbacks=callbacks)
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        self.n_features_in_ = X.shape[1]
        return self

    def predict_margin(self, X: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        kw = {"num_threads": num_threads} if num_threads else {}
        return self.booster_.predict(X, raw_score=True, num_iteration=self.best_iteration_, **kw)
