"""Backtesting on matured labels: did the PDs of a year ago come true?

Twelve months after a book was scored its outcomes are known. A validator asks three things,
each answered by a one-sided test turned into a traffic light (green; yellow when the test
rejects at the yellow confidence, 95% by default; red at the red one, 99.9%):

- discrimination: is the AUC now lower than at validation? (Hanley-McNeil standard errors)
- calibration per grade: is the grade's PD too low? (Jeffreys test)
- calibration of the portfolio: are there more defaults than the mean PD allows? (binomial)

Only underestimated risk is flagged: a PD that is too high costs business, not losses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

from riskcast.config import MonitoringConfig
from riskcast.errors import DataValidationError, InputError
from riskcast.training.dataset import default_within
from riskcast.training.evaluation import binomial_pvalue, jeffreys_pvalue

Light = Literal["green", "yellow", "red", "n/a"]
_ORDER = {"n/a": 0, "green": 1, "yellow": 2, "red": 3}


def traffic_light(pvalue: float, yellow: float = 0.95, red: float = 0.999) -> Light:
    """Green unless the one-sided test rejects at ``yellow`` (yellow) or ``red`` (red) confidence."""
    if pvalue is None or not math.isfinite(pvalue):
        return "n/a"
    if pvalue < 1.0 - red:
        return "red"
    if pvalue < 1.0 - yellow:
        return "yellow"
    return "green"


def worst(lights: Sequence[Light]) -> Light:
    return max(lights, key=_ORDER.__getitem__, default="n/a")


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC from ``n_pos`` defaults and ``n_neg`` non-defaults (Hanley and
    McNeil, 1982), which needs no resampling and is what validators quote."""
    if n_pos < 1 or n_neg < 1 or not math.isfinite(auc):
        return float("nan")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return float(math.sqrt(max(var, 0.0)))


def auc_decline_pvalue(auc: float, se: float, reference_auc: float, reference_se: float = 0.0) -> float:
    """One-sided p-value of "the AUC has not fallen below the reference": small when it has."""
    scale = math.hypot(se, reference_se)
    if not (math.isfinite(auc) and math.isfinite(reference_auc) and math.isfinite(scale)) or scale <= 0:
        return float("nan")
    return float(stats.norm.cdf((auc - reference_auc) / scale))


@dataclass(frozen=True)
class GradeCheck:
    grade: str
    rows: int
    defaults: int
    observed_dr: float
    mean_pd: float
    jeffreys_p: float
    light: Light


@dataclass(frozen=True)
class Backtest:
    """The verdicts; ``light`` is the worst of discrimination, portfolio and grades."""

    rows: int
    defaults: int
    observed_dr: float
    mean_pd: float
    binomial_p: float
    portfolio_light: Light
    auc: float
    auc_se: float
    reference_auc: float
    reference_auc_se: float
    auc_p: float
    auc_light: Light
    grades: tuple[GradeCheck, ...]
    light: Light
    yellow: float
    red: float

    def reasons(self) -> list[str]:
        """One sentence per red verdict."""
        out = []
        if self.auc_light == "red":
            out.append(f"AUC {self.auc:.3f} against {self.reference_auc:.3f} at validation (p = {self.auc_p:.2g})")
        if self.portfolio_light == "red":
            out.append(f"{self.defaults} defaults among {self.rows:,} customers ({self.observed_dr:.2%}) against a "
                       f"mean PD of {self.mean_pd:.2%} (binomial p = {self.binomial_p:.2g})")
        for g in self.grades:
            if g.light == "red":
                out.append(f"grade {g.grade}: {g.observed_dr:.2%} defaulted against a PD of {g.mean_pd:.2%} "
                           f"({g.defaults}/{g.rows}, Jeffreys p = {g.jeffreys_p:.2g})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "red_reasons": self.reasons()}


def backtest(y: np.ndarray, pd_: np.ndarray, grades: np.ndarray, grade_order: Sequence[str],
             reference_auc: float, config: MonitoringConfig, reference_auc_se: float = 0.0) -> Backtest:
    """Judge PDs against the outcomes ``y`` (1 = defaulted within the horizon).

    ``reference_auc`` is the AUC at validation and ``reference_auc_se`` its standard error
    (0 treats it as exact, which makes the test quicker to flag a fall).
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(pd_, dtype=float)
    g = np.asarray(grades, dtype=object).astype(str)
    if not (len(y) == len(p) == len(g)):
        raise InputError(f"outcomes ({len(y)}), PDs ({len(p)}) and grades ({len(g)}) differ in length", field="labels")
    if len(y) == 0:
        raise InputError("labels: no scored customer to backtest", field="labels")
    if not np.isin(y, (0.0, 1.0)).all():
        raise InputError("labels: outcomes must be 0 or 1", field="labels")
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise InputError("pd_12m: PDs must be numbers in [0, 1]", field="pd_12m")
    yellow, red = config.backtest_yellow, config.backtest_red
    n, d = len(y), int(y.sum())
    mean_pd = float(p.mean())
    bin_p = binomial_pvalue(d, n, mean_pd)
    if 0 < d < n:
        auc = float(roc_auc_score(y, p))
        se = hanley_mcneil_se(auc, d, n - d)
    else:
        auc = se = float("nan")
    auc_p = auc_decline_pvalue(auc, se, reference_auc, reference_auc_se)
    checks = []
    for grade in [*grade_order, *sorted(set(g) - set(grade_order))]:
        mask = g == grade
        rows = int(mask.sum())
        if not rows:
            continue
        dg, pg = int(y[mask].sum()), float(p[mask].mean())
        jp = jeffreys_pvalue(dg, rows, pg)
        checks.append(GradeCheck(grade, rows, dg, dg / rows, pg, jp, traffic_light(jp, yellow, red)))
    portfolio_light = traffic_light(bin_p, yellow, red)
    auc_light = traffic_light(auc_p, yellow, red)
    return Backtest(
        rows=n, defaults=d, observed_dr=d / n, mean_pd=mean_pd, binomial_p=bin_p, portfolio_light=portfolio_light,
        auc=auc, auc_se=se, reference_auc=float(reference_auc), reference_auc_se=float(reference_auc_se),
        auc_p=auc_p, auc_light=auc_light, grades=tuple(checks),
        light=worst([portfolio_light, auc_light, *(c.light for c in checks)]), yellow=yellow, red=red)


def matured_outcomes(scored: pd.DataFrame, defaults: pd.DataFrame, labels_as_of: pd.Timestamp,
                     horizon_months: int = 12) -> tuple[pd.DataFrame, dict[str, int]]:
    """The scored rows whose horizon has passed by ``labels_as_of``, with their outcome.

    ``defaults`` must be complete up to ``labels_as_of``. Returns the rows with ``default_12m``
    and the rows left out, by reason: ``defaulted_before`` (the customer had defaulted on or
    before the date it was scored: a book should not score those, they say nothing about the
    PD) and ``no_pd`` (no PD was given, e.g. referred when even the scorecard failed).
    """
    for col in ("customer_id", "as_of", "pd_12m", "grade"):
        if col not in scored.columns:
            raise DataValidationError("current", col, "column is missing (a backtest needs a scored book)")
    for col in ("customer_id", "default_date"):
        if col not in defaults.columns:
            raise DataValidationError("labels", col, "column is missing (expected the defaults table)")
    as_of = pd.to_datetime(scored["as_of"], errors="coerce")
    if as_of.isna().any():
        raise DataValidationError("current", "as_of", f"{int(as_of.isna().sum())} row(s) without a valid date")
    dates = pd.to_datetime(defaults["default_date"], errors="coerce")
    if dates.isna().any():
        raise DataValidationError("labels", "default_date", f"{int(dates.isna().sum())} row(s) without a valid date")
    matures = as_of.max() + pd.DateOffset(months=horizon_months)
    if matures > labels_as_of:
        raise InputError(f"labels: the book scored on {as_of.max().date()} matures on {matures.date()}, after "
                         f"the labels' date {labels_as_of.date()}; backtest it when {horizon_months} months have "
                         f"passed", field="labels")
    rows = pd.DataFrame({"customer_id": scored["customer_id"].astype(str), "as_of": as_of})
    first = pd.DataFrame({"customer_id": defaults["customer_id"].astype(str), "default_date": dates})
    prior = (rows["customer_id"].map(first.groupby("customer_id")["default_date"].min()) <= rows["as_of"]).to_numpy()
    no_pd = pd.to_numeric(scored["pd_12m"], errors="coerce").isna().to_numpy() & ~prior
    keep = ~(prior | no_pd)
    out = scored.loc[keep].copy()
    out["default_12m"] = default_within(rows.loc[keep], first, horizon_months).to_numpy()
    return out, {"defaulted_before": int(prior.sum()), "no_pd": int(no_pd.sum())}
