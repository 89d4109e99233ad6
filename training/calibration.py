"""Calibration of raw model margins to PDs, fitted on the validation window.

Platt scaling (a logistic regression on the margin) keeps the ranking and needs few defaults,
which suits the small validation windows of a credit book; isotonic regression follows any
monotone shape but needs more defaults. ``choose_calibrator`` lets the validation window
decide, by the out-of-fold log loss of each.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit as _logit
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold


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

    kind = "platt"

    def to_dict(self) -> dict:
        return {"kind": "platt", "slope": self.slope_, "intercept": self.intercept_, "pd_floor": self.pd_floor}

    @classmethod
    def from_dict(cls, d: dict) -> "PlattCalibrator":
        c = cls(d["pd_floor"])
        c.slope_, c.intercept_ = float(d["slope"]), float(d["intercept"])
        return c


class IsotonicCalibrator:
    """PD = a non-decreasing step-wise linear map of the margin, floored at ``pd_floor``.

    ``slope_`` is the least-squares slope of the calibrated log-odds on the margin over the
    fitted rows: the scale that turns the model's per-feature contributions into log-odds
    for reason codes.
    """

    kind = "isotonic"

    def __init__(self, pd_floor: float = 0.0003) -> None:
        self.pd_floor = pd_floor

    def fit(self, margin: np.ndarray, y: np.ndarray) -> "IsotonicCalibrator":
        m = np.asarray(margin, dtype=float)
        iso = IsotonicRegression(y_min=self.pd_floor, y_max=1 - self.pd_floor, out_of_bounds="clip")
        iso.fit(m, np.asarray(y, dtype=float))
        self.x_ = np.asarray(iso.X_thresholds_, dtype=float)
        self.y_ = np.asarray(iso.y_thresholds_, dtype=float)
        z = self.logit(m)
        centred = m - m.mean()
        denom = float(np.dot(centred, centred))
        self.slope_ = float(np.dot(centred, z - z.mean()) / denom) if denom > 0 else 1.0
        return self

    def transform(self, margin: np.ndarray) -> np.ndarray:
        p = np.interp(np.asarray(margin, dtype=float), self.x_, self.y_)
        return np.clip(p, self.pd_floor, 1 - self.pd_floor)

    def logit(self, margin: np.ndarray) -> np.ndarray:
        return _logit(self.transform(margin))

    def to_dict(self) -> dict:
        return {"kind": "isotonic", "x": self.x_.tolist(), "y": self.y_.tolist(), "slope": self.slope_,
                "pd_floor": self.pd_floor}

    @classmethod
    def from_dict(cls, d: dict) -> "IsotonicCalibrator":
        c = cls(d["pd_floor"])
        c.x_, c.y_, c.slope_ = np.asarray(d["x"], dtype=float), np.asarray(d["y"], dtype=float), float(d["slope"])
        return c


Calibrator = PlattCalibrator | IsotonicCalibrator
_KINDS = {"platt": PlattCalibrator, "isotonic": IsotonicCalibrator}


def calibrator_from_dict(d: dict) -> Calibrator:
    kind = d.get("kind", "platt")
    if kind not in _KINDS:
        raise ValueError(f"calibrator kind {kind!r} is not one of {sorted(_KINDS)}")
    return _KINDS[kind].from_dict(d)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def choose_calibrator(margin: np.ndarray, y: np.ndarray, pd_floor: float, folds: int = 5,
                      seed: int = 0) -> tuple[Calibrator, dict[str, float]]:
    """Platt or isotonic, whichever has the lower out-of-fold log loss on ``(margin, y)``,
    refitted on all of it. Returns the calibrator and each candidate's log loss."""
    m = np.asarray(margin, dtype=float)
    t = np.asarray(y, dtype=int)
    losses: dict[str, float] = {}
    k = int(min(folds, np.bincount(t, minlength=2).min()))
    for kind, cls in _KINDS.items():
        if k < 2:
            break
        oof = np.empty(m.size)
        for fit_idx, held in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(m, t):
            oof[held] = cls(pd_floor).fit(m[fit_idx], t[fit_idx]).transform(m[held])
        losses[kind] = _log_loss(t, np.clip(oof, 1e-12, 1 - 1e-12))
    best = min(losses, key=losses.get) if losses else "platt"
    return _KINDS[best](pd_floor).fit(m, t), losses
