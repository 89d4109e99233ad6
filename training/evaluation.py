"""Discrimination and calibration metrics on the out-of-time test window."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def binary_metrics(y: np.ndarray, p: np.ndarray, prefix: str) -> dict[str, float]:
    """AUC, Gini, KS, Brier and log loss under stable names ``{prefix}_auc`` etc."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    auc = float(roc_auc_score(y, p))
    return {
        f"{prefix}_auc": auc,
        f"{prefix}_gini": 2 * auc - 1,
        f"{prefix}_ks": ks_statistic(y, p),
        f"{prefix}_brier": float(brier_score_loss(y, p)),
        f"{prefix}_logloss": float(log_loss(y, p, labels=[0, 1])),
        f"{prefix}_mean_pd": float(p.mean()),
    }
