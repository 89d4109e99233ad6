"""Walk-forward backtest: refit as of several past dates on the outcomes known then, score the
quarters that followed, and compare with what happened (and, on synthetic books, the true PD).

One out-of-time test window is a single draw; a model that beats it once may not beat the next
quarter. Each origin here is a date on which the model could have been trained in production:
only rows whose 12-month outcome had closed by then are used, split into training and
validation with the same embargo as the main split. Pure: a labelled table in, figures out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from riskcast.config import RiskcastConfig, TrainingConfig
from riskcast.data.io import RawTables
from riskcast.errors import InputError
from riskcast.features.registry import FeatureRegistry, default_registry

from .dataset import LABEL, TRUE_PD, Split, embargoed_dates, labelled_snapshots, resolve_embargo
from .evaluation import binary_metrics, expected_calibration_error
from .fit import fit_bundle

Progress = Callable[[str], None]


@dataclass(frozen=True)
class OriginResult:
    """One origin: the windows its model learnt from and the figures on the snapshots it scored."""

    origin: pd.Timestamp
    train_dates: tuple[pd.Timestamp, ...]
    valid_dates: tuple[pd.Timestamp, ...]
    scored_dates: tuple[pd.Timestamp, ...]
    train_rows: int
    valid_rows: int
    #: the last day any training / validation row's outcome window reaches (as_of + horizon)
    train_outcome_end: pd.Timestamp
    valid_outcome_end: pd.Timestamp
    best_iteration: int
    calibration: str
    figures: dict[str, float]

    def row(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "train_window": _span(self.train_dates), "valid_window": _span(self.valid_dates),
            "scored_window": _span(self.scored_dates),
            "train_rows": self.train_rows, "valid_rows": self.valid_rows,
            "train_outcome_end": self.train_outcome_end, "valid_outcome_end": self.valid_outcome_end,
            "best_iteration": self.best_iteration, "calibration": self.calibration,
            **self.figures,
        }


@dataclass(frozen=True)
class WalkForward:
    """Per-origin results, the figures pooled over every scored row of every origin (a row
    scored from two origins counts twice), the settings used and the scored rows themselves
    (origin, customer, as_of, label, model and scorecard PD, true PD if known)."""

    origins: tuple[OriginResult, ...]
    pooled: dict[str, float]
    settings: dict[str, int | bool]
    scores: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """One row per origin, oldest first."""
        return pd.DataFrame([o.row() for o in self.origins])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: dates as ISO strings, missing figures as None."""
        return {"settings": dict(self.settings),
                "origins": [{k: _jsonable(v) for k, v in o.row().items()} for o in self.origins],
                "pooled": {k: _jsonable(v) for k, v in self.pooled.items()}}


def _span(dates: Sequence[pd.Timestamp]) -> str:
    return f"{min(dates).date()}..{max(dates).date()}" if dates else "none"


def _jsonable(v: Any) -> Any:
    if isinstance(v, pd.Timestamp):
        return str(v.date())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    return v


def backtest_figures(y: np.ndarray, p: np.ndarray, true_pd: np.ndarray | None = None,
            scorecard_pd: np.ndarray | None = None) -> dict[str, float]:
    """Discrimination and calibration of ``p`` on outcomes ``y``; with the true PD, its AUC and
    Brier on the same rows and the model's share of them (AUC ratio) and multiple (Brier ratio)."""
    y = np.asarray(y, dtype=int)
    m = binary_metrics(y, p, "m")
    out = {
        "rows": float(len(y)), "defaults": float(y.sum()), "default_rate": float(y.mean()),
        "mean_pd": m["m_mean_pd"], "auc": m["m_auc"], "ks": m["m_ks"], "brier": m["m_brier"],
        "logloss": m["m_logloss"], "ece": expected_calibration_error(y, p),
    }
    if scorecard_pd is not None:
        out["scorecard_auc"] = binary_metrics(y, scorecard_pd, "c")["c_auc"]
    if true_pd is not None:
        t = binary_metrics(y, true_pd, "t")
        out.update({"true_pd_auc": t["t_auc"], "true_pd_brier": t["t_brier"],
                    "auc_vs_true_pd": out["auc"] / t["t_auc"], "brier_vs_true_pd": out["brier"] / t["t_brier"]})
    return out


def _windows_at(dates: Sequence[pd.Timestamp], origin: pd.Timestamp, cfg: TrainingConfig
                ) -> tuple[list[pd.Timestamp], list[pd.Timestamp]]:
    """Training and validation dates for a model fitted on ``origin``: only dates whose outcome
    window has closed by then (and the embargo, if longer), split with the embargo."""
    embargo = resolve_embargo(cfg.horizon_months, cfg.embargo_months)
    known = max(cfg.horizon_months, embargo)
    closed = [d for d in dates if d + pd.DateOffset(months=known) <= origin]
    return embargoed_dates(closed, origin, cfg.valid_snapshots, embargo, cfg.embargo_validation)


def possible_origins(dates: Sequence[pd.Timestamp], cfg: TrainingConfig) -> list[pd.Timestamp]:
    """Every snapshot date that can be an origin, oldest first: ``walk_forward_snapshots``
    snapshots from it on are in the data, and before it a full validation window and at least
    one training snapshot have known outcomes."""
    dates = sorted(pd.Timestamp(d) for d in dates)
    last = len(dates) - cfg.walk_forward_snapshots
    out = []
    for origin in dates[:last + 1] if last >= 0 else []:
        train_d, valid_d = _windows_at(dates, origin, cfg)
        if train_d and len(valid_d) == cfg.valid_snapshots:
            out.append(origin)
    return out


def _two_classes(part: pd.DataFrame, what: str, origin: pd.Timestamp) -> None:
    if part[LABEL].nunique() < 2:
        raise InputError(f"{LABEL}: the {what} rows of the origin {origin.date()} have only one class; "
                         "more data is needed", field=LABEL)


def walk_forward(data: pd.DataFrame, registry: FeatureRegistry, cfg: RiskcastConfig,
                 progress: Progress | None = None) -> WalkForward:
    """Fit one bundle per origin (the newest ``walk_forward_origins`` possible, a snapshot
    apart, the newest scoring the last snapshots of ``data``) and score the
    ``walk_forward_snapshots`` snapshots from each origin on.

    ``data`` is the labelled snapshot table (``attach_labels`` over ``snapshot_dates``): every
    row's outcome is assumed known, which is what ``snapshot_dates`` guarantees."""
    say = progress or (lambda _m: None)
    t = cfg.training
    for col in ("as_of", LABEL, *registry.names):
        if col not in data.columns:
            raise InputError(f"{col}: missing from the snapshot table", field=col)
    dates = sorted(pd.Timestamp(d) for d in data["as_of"].unique())
    embargo = resolve_embargo(t.horizon_months, t.embargo_months)
    possible = possible_origins(dates, t)
    if len(possible) < t.walk_forward_origins:
        where = f" ({possible[0].date()}..{possible[-1].date()})" if possible else ""
        raise InputError(
            f"walk_forward_origins: {t.walk_forward_origins} asked, the data gives {len(possible)}{where}; each "
            f"origin scores {t.walk_forward_snapshots} snapshot(s) from its date on and trains on {t.valid_snapshots} "
            f"validation and at least 1 training snapshot whose {t.horizon_months}-month outcomes are known on it "
            f"({embargo}-month embargo); the data has {len(dates)} snapshot(s)"
            + (f" {dates[0].date()}..{dates[-1].date()}" if dates else ""), field="walk_forward_origins")
    horizon = pd.DateOffset(months=t.horizon_months)
    has_truth = TRUE_PD in data.columns and bool(data[TRUE_PD].notna().all())
    results: list[OriginResult] = []
    scored_parts: list[pd.DataFrame] = []
    chosen = possible[-t.walk_forward_origins:]
    for k, origin in enumerate(chosen, 1):
        train_d, valid_d = _windows_at(dates, origin, t)
        scored_d = [d for d in dates if d >= origin][:t.walk_forward_snapshots]
        train = data[data["as_of"].isin(train_d)].reset_index(drop=True)
        valid = data[data["as_of"].isin(valid_d)].reset_index(drop=True)
        scored = data[data["as_of"].isin(scored_d)].reset_index(drop=True)
        for part, what in ((train, "training"), (valid, "validation"), (scored, "scored")):
            _two_classes(part, what, origin)
        say(f"origin {k}/{len(chosen)} {origin.date()}: training {_span(train_d)} ({len(train):,} rows), "
            f"validation {_span(valid_d)}, scoring {_span(scored_d)} ({len(scored):,} rows)")
        split = Split(train, valid, scored, embargo_months=embargo, embargo_validation=t.embargo_validation)
        bundle = fit_bundle(split, registry, t, cfg.master_scale)
        p = bundle.model_pd(bundle.matrix(scored))
        y = scored[LABEL].to_numpy()
        truth = scored[TRUE_PD].to_numpy(float) if has_truth else None
        card = bundle.scorecard_pd(scored)
        figs = backtest_figures(y, p, truth, card)
        say(f"origin {origin.date()}: AUC {figs['auc']:.4f}, Brier {figs['brier']:.5f}, "
            f"mean PD {figs['mean_pd']:.2%} against {figs['default_rate']:.2%} observed")
        results.append(OriginResult(
            origin=origin, train_dates=tuple(train_d), valid_dates=tuple(valid_d), scored_dates=tuple(scored_d),
            train_rows=len(train), valid_rows=len(valid),
            train_outcome_end=max(train_d) + horizon, valid_outcome_end=max(valid_d) + horizon,
            best_iteration=int(bundle.metadata["best_iteration"]), calibration=str(bundle.metadata["calibration"]),
            figures=figs))
        part = pd.DataFrame({"origin": origin, "as_of": scored["as_of"].to_numpy(), LABEL: y, "pd": p,
                             "scorecard_pd": card})
        if "customer_id" in scored.columns:
            part.insert(1, "customer_id", scored["customer_id"].to_numpy())
        if truth is not None:
            part[TRUE_PD] = truth
        scored_parts.append(part)
    scores = pd.concat(scored_parts, ignore_index=True)
    pooled = backtest_figures(scores[LABEL].to_numpy(), scores["pd"].to_numpy(),
                              scores[TRUE_PD].to_numpy(float) if has_truth else None, scores["scorecard_pd"].to_numpy())
    aucs = [r.figures["auc"] for r in results]
    pooled.update({"origins": float(len(results)), "origin_auc_min": float(min(aucs)),
                   "origin_auc_max": float(max(aucs)), "origin_auc_std": float(np.std(aucs))})
    settings: dict[str, int | bool] = {
        "origins": t.walk_forward_origins, "scored_snapshots": t.walk_forward_snapshots,
        "horizon_months": t.horizon_months, "embargo_months": embargo, "embargo_validation": t.embargo_validation,
        "valid_snapshots": t.valid_snapshots, "seed": t.seed}
    return WalkForward(tuple(results), pooled, settings, scores)


def walk_forward_on_book(tables: RawTables, cfg: RiskcastConfig, progress: Progress | None = None) -> WalkForward:
    """The backtest of the book: the same snapshots, features and labels as training."""
    registry = default_registry()
    return walk_forward(labelled_snapshots(tables, cfg.training, registry, progress), registry, cfg, progress=progress)
