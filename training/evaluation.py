"""Discrimination and calibration metrics on the out-of-time test window."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
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


# -- calibration ----------------------------------------------------------------------------------

def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean gap between observed default rate and mean PD over equal-count PD bins, weighted by
    bin size (equal-count bins: with 2% defaults, equal-width bins would leave most rows in one)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    gap = 0.0
    for idx in np.array_split(order, min(bins, len(p))):
        if idx.size:
            gap += idx.size * abs(y[idx].mean() - p[idx].mean())
    return float(gap / len(p))


def jeffreys_pvalue(defaults: int, n: int, pd_: float) -> float:
    """One-sided Jeffreys test of a grade's PD: the posterior probability (Beta(d + 1/2,
    n - d + 1/2)) that the true default rate is at most the PD. Small: the PD is too low."""
    return float(stats.beta.cdf(pd_, defaults + 0.5, n - defaults + 0.5))


def binomial_pvalue(defaults: int, n: int, pd_: float) -> float:
    """One-sided binomial test: the chance of at least ``defaults`` defaults among ``n`` at ``pd_``."""
    return float(stats.binom.sf(defaults - 1, n, pd_))


def hosmer_lemeshow(y: np.ndarray, p: np.ndarray, groups: int = 10) -> tuple[float, float]:
    """Hosmer-Lemeshow statistic over equal-count PD groups and its chi-square p-value
    (``groups - 2`` degrees of freedom)."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    order = np.argsort(p, kind="stable")
    stat = 0.0
    used = 0
    for idx in np.array_split(order, min(groups, len(p))):
        if not idx.size:
            continue
        n, observed, expected = idx.size, y[idx].sum(), p[idx].sum()
        mean_pd = expected / n
        stat += (observed - expected) ** 2 / (n * mean_pd * (1 - mean_pd))
        used += 1
    return float(stat), float(stats.chi2.sf(stat, max(used - 2, 1)))


def grade_table(y: np.ndarray, p: np.ndarray, grades: np.ndarray, order: list[str], alpha: float = 0.01) -> pd.DataFrame:
    """Per grade of the master scale: rows, defaults, observed rate against mean PD, and the
    Jeffreys and binomial tests at ``alpha`` (one-sided: is the PD too low?)."""
    df = pd.DataFrame({"grade": np.asarray(grades, dtype=object), "y": np.asarray(y, dtype=int),
                       "pd": np.asarray(p, dtype=float)})
    rows = []
    for g in order:
        part = df[df["grade"] == g]
        n, d = len(part), int(part["y"].sum())
        mean_pd = float(part["pd"].mean()) if n else float("nan")
        jp = jeffreys_pvalue(d, n, mean_pd) if n else float("nan")
        bp = binomial_pvalue(d, n, mean_pd) if n else float("nan")
        rows.append({"grade": g, "rows": n, "share": n / max(len(df), 1), "defaults": d,
                     "observed_dr": d / n if n else float("nan"), "mean_pd": mean_pd,
                     "jeffreys_p": jp, "binomial_p": bp, "jeffreys_rejected": bool(n and jp < alpha)})
    return pd.DataFrame(rows)


def calibration_rejected(rejected: int, tested: int, max_share: float, alpha: float = 0.01) -> bool:
    """Whether a scale's calibration is rejected: more than ``max_share`` of the grades fail
    the Jeffreys test, and more than chance explains (each grade fails with probability
    ``alpha`` when its PD is right, so one grade in eight failing is no evidence)."""
    if tested <= 0 or rejected / tested <= max_share:
        return False
    return float(stats.binom.sf(rejected - 1, tested, alpha)) < alpha


def calibration_metrics(y: np.ndarray, p: np.ndarray, table: pd.DataFrame, prefix: str) -> dict[str, float]:
    """ECE, Hosmer-Lemeshow and the share of populated grades whose PD the Jeffreys test rejects."""
    stat, pvalue = hosmer_lemeshow(y, p)
    populated = table[table["rows"] > 0]
    return {
        f"{prefix}_ece": expected_calibration_error(y, p),
        f"{prefix}_hl_stat": stat,
        f"{prefix}_hl_pvalue": pvalue,
        f"{prefix}_jeffreys_rejected_share": float(populated["jeffreys_rejected"].mean()) if len(populated) else 0.0,
        f"{prefix}_grades_tested": float(len(populated)),
        f"{prefix}_max_grade_share": float(table["share"].max()) if len(table) else 0.0,
    }
