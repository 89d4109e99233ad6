"""Calibration of raw model margins to PDs, fitted on the validation window.

Platt scaling (a logistic regression on the margin) keeps the ranking and needs few defaults,
which suits the small validation windows of a credit book.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit


class PlattCalibrator:
    """PD = sigmoid(slope * margin + intercept), floored at ``pd_floor``."""

    def __init__(self, pd_floor: float = 0.0003) -> None:
        self.pd_floor = pd_floor

    def fit(self, margin: np.ndarray, y: np.ndarray) -> "PlattCalibrator":
        m = np.asarray(margin, dtype=float)
        t = np.asarray(y, dtype=float)

        def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = w[0] * m + w[1]
            p = expit(z)
            loss = np.sum(np.logaddexp(0, z) - t * z)
            g = p - t
            return loss, np.array([np.dot(g, m), g.sum()])

        res = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        self.slope_, self.intercept_ = float(res.x[0]), float(res.x[1])
        return self

    def logit(self, margin: np.ndarray) -> np.ndarray:
        floor = np.log(self.pd_floor / (1 - self.pd_floor))
        return np.maximum(self.slope_ * np.asarray(margin, dtype=float) + self.intercept_, floor)

    def transform(self, margin: np.ndarray) -> np.ndarray:
        return expit(self.logit(margin))

    def to_dict(self) -> dict:
        return {"kind": "platt", "slope": self.slope_, "intercept": self.intercept_, "pd_floor": self.pd_floor}

    @classmethod
    def from_dict(cls, d: dict) -> "PlattCalibrator":
        c = cls(d["pd_floor"])
        c.slope_, c.intercept_ = float(d["slope"]), float(d["intercept"])
        return c
